/**
 * The native addon (build/Release/qzo_native.node, from src/native/addon.cc):
 * loads a generated kernel library and calls its kernels with typed arrays
 * passed by pointer, without copies. Every failure reaches the caller as a
 * one-line QzoError.
 *
 * A kernel library exports `const char* qzo_manifest(void)` (JSON), optionally
 * `const char* qzo_last_error(void)`, and kernels of the C signature
 * `int name(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars)`.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { QzoError } from "../util/errors.js";
import { packageRoot } from "../util/package-root.js";

export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array;

/**
 * A kernel argument: a typed array goes to `ptrs` (a pointer to its first
 * element, byteOffset included; the kernel reads and writes the JS memory); a
 * number or bigint goes to `scalars` as a double, in order among the non-array
 * arguments (a bigint must be exactly representable as a double).
 */
export type KernelArg = TypedArray | number | bigint;

export interface KernelLibrary {
  /** The path the library was opened from. */
  readonly path: string;
  /** The JSON text returned by the library's `qzo_manifest()`. */
  manifest(): string;
  /** Whether the library exports a function of this name. */
  has(name: string): boolean;
  /**
   * Calls kernel `name` synchronously and returns its return code (0: success).
   * The function pointer is looked up once per name and cached.
   */
  call(name: string, args: readonly KernelArg[]): number;
  /** Calls `name` and throws a QzoError with `lastError()` when it returns non-zero. */
  run(name: string, args: readonly KernelArg[]): void;
  /** The library's `qzo_last_error()`, or null when it exports none or it returns NULL. */
  lastError(): string | null;
  /** Unloads the library (dlclose); any later use throws. Closing twice is harmless. */
  close(): void;
}

/** The addon's own object (src/native/addon.cc); its errors are plain Errors. */
interface NativeLibrary {
  readonly path: string;
  manifest(): string;
  has(name: string): boolean;
  call(name: string, args: readonly KernelArg[]): number;
  lastError(): string | null;
  close(): void;
}

/** The addon's MPI binding (src/native/mpi.cc); wrapped by src/runtime/parallel/mpi.ts. */
export interface NativeMpi {
  mpiLoad(candidates: readonly string[]): string;
  mpiInit(): { rank: number; size: number; version: string };
  mpiIallreduce(values: Float64Array, op: "sum" | "max" | "min"): number;
  mpiIbcast(bytes: Uint8Array, root: number): number;
  mpiTest(id: number): null | Float64Array | Uint8Array;
  mpiFinalize(): void;
  mpiAbort(code: number): void;
}

interface NativeAddon extends NativeMpi {
  open(path: string): NativeLibrary;
}

export const ADDON_FILE = "qzo_native.node";
const NOT_BUILT = "qzo: the native addon is not built (in a clone of qzo: npm ci or npm run build:native; where qzo is a dependency: npm rebuild qzo)";

/** Where the addon is (or would be) built: <package root>/build/Release/qzo_native.node. */
export function nativeAddonPath(root: string = packageRoot()): string {
  return join(root, "build", "Release", ADDON_FILE);
}

const loaded = new Map<string, NativeAddon>();

/** Loads the addon once per path; a QzoError when it is not built or cannot load. */
export function loadNativeAddon(root?: string): NativeAddon {
  const file = nativeAddonPath(root);
  const cached = loaded.get(file);
  if (cached) return cached;
  if (!existsSync(file)) throw new QzoError(NOT_BUILT);
  let addon: NativeAddon;
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    throw new QzoError(`qzo: cannot load the native addon ${file}: ${oneLine(e)} (rebuild it: npm run build:native)`);
  }
  loaded.set(file, addon);
  return addon;
}

/** Whether the addon is built (without loading it). */
export function nativeAddonBuilt(root?: string): boolean {
  return existsSync(nativeAddonPath(root));
}

function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s*\n\s*/g, " ").trim();
}

/** Runs `f`, turning an addon Error into `path: message` as a QzoError. */
function guard<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof QzoError) throw e;
    throw new QzoError(`${path}: ${oneLine(e)}`);
  }
}

/**
 * Opens a generated kernel library (dlopen RTLD_NOW | RTLD_LOCAL). A missing
 * file, an unresolved symbol or a library that does not load gives a QzoError.
 */
export function openKernelLibrary(path: string): KernelLibrary {
  const addon = loadNativeAddon();
  let lib: NativeLibrary;
  try {
    lib = addon.open(path);
  } catch (e) {
    // dlerror() usually starts with the path itself; say it once.
    let msg = oneLine(e);
    if (msg.startsWith(`${path}: `)) msg = msg.slice(path.length + 2);
    throw new QzoError(`${path}: cannot load the kernel library: ${msg}`);
  }
  const kernelLibrary: KernelLibrary = {
    path,
    manifest: () => guard(path, () => lib.manifest()),
    has: (name) => guard(path, () => lib.has(name)),
    call: (name, args) => guard(path, () => lib.call(name, args)),
    run(name, args) {
      const rc = kernelLibrary.call(name, args);
      if (rc !== 0) {
        const why = kernelLibrary.lastError();
        throw new QzoError(`${path}: kernel '${name}' failed (code ${rc})${why ? `: ${why.replace(/\s*\n\s*/g, " ").trim()}` : ""}`);
      }
    },
    lastError: () => guard(path, () => lib.lastError()),
    close: () => lib.close(),
  };
  return kernelLibrary;
}
