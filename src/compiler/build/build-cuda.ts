/**
 * Builds generated CUDA into ONE fat shared library per compiled spec with nvcc: machine code
 * for sm_80, sm_89 and sm_90a (one -gencode each), the CUDA runtime linked statically, cached
 * by a hash of every generated file (the program and its headers), the flags and nvcc's version
 * in the same cache directory as the CPU libraries (build-cpu.ts cacheDir). A compile error is reported with the generated line it
 * points at; a missing nvcc is one QzoError line.
 */
import { existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execa, execaSync } from "execa";
import { QzoError } from "../../util/errors.js";
import type { GeneratedFile } from "../codegen/target.js";
import { cacheDir, filesHash, writeGenerated, type BuiltLibrary } from "./build-cpu.js";

/** Target GPUs: A100 (sm_80), L4/L40/RTX 40 (sm_89), H100/H200 (sm_90a). */
export const CUDA_ARCHS = ["80", "89", "90a"] as const;

/** Flags of every CUDA compile: no fast math (the numerics contract), C++17, extended lambdas. */
export const CUDA_FLAGS = ["-std=c++17", "--extended-lambda", "-Xcompiler", "-fPIC", "-lineinfo", "-diag-suppress", "177,128"];

/** Optimization: -O3 everywhere for what runs; a compile check lowers it (2.3x faster, same front end and PTX instructions). */
const OPTIMIZE = ["-O3"];
const CHECK_ONLY = ["-O0", "-Xcicc", "-O1", "-Xptxas", "-O1"];

export function gencode(arch: string): string[] {
  return [`-gencode=arch=compute_${arch},code=sm_${arch}`];
}

export interface CudaBuildOptions {
  /** Architectures to build machine code for (default: CUDA_ARCHS). */
  archs?: readonly string[];
  /** Library base name (default "kernels"). */
  name?: string;
  /** Compile to an object only (`-c`), e.g. for compile tests. */
  objectOnly?: boolean;
  /** An object that is only checked, never run: host -O0, device -O1 (requires objectOnly). */
  checkOnly?: boolean;
  /** Keep the intermediate files (PTX) next to the output (`--keep`). */
  keep?: boolean;
  /** Use bf16 operands instead of fp16 for the tensor cores (-DQZO_BF16). */
  bf16?: boolean;
  /** Tuning knobs of the kernels (-DNAME=VALUE), e.g. QZO_PIPE_STAGES; see docs/CUDA.md. */
  defines?: Record<string, number>;
}

export function nvccPath(): string {
  return process.env["NVCC"] ?? "nvcc";
}

/** nvcc's version line, or a QzoError naming what to do. */
export function nvccVersion(): string {
  const nvcc = nvccPath();
  try {
    const r = execaSync(nvcc, ["--version"]);
    return r.stdout.split("\n").filter((l) => l.trim()).pop() ?? "";
  } catch {
    throw new QzoError(`no CUDA compiler found (tried '${nvcc}'): install the CUDA toolkit (nvcc) or set NVCC, or use --device cpu`);
  }
}

function plan(files: readonly GeneratedFile[], opts: CudaBuildOptions) {
  const version = nvccVersion();
  const archs = opts.archs ?? CUDA_ARCHS;
  const name = opts.name ?? "kernels";
  const defines = Object.entries(opts.defines ?? {}).map(([k, v]) => `-D${k}=${v}`);
  if (opts.checkOnly && !opts.objectOnly) throw new Error("internal: checkOnly builds are objects (objectOnly)");
  const flags = [...(opts.checkOnly ? CHECK_ONLY : OPTIMIZE), ...CUDA_FLAGS, ...(opts.bf16 ? ["-DQZO_BF16"] : []), ...defines, ...archs.flatMap(gencode)];
  const link = opts.objectOnly ? ["-c"] : ["-shared", "-cudart", "static", "-ldl"];
  const hash = filesHash(files, [...flags, ...link].join(" "), version);
  const dir = join(cacheDir(), `cuda-${hash}`);
  const out = join(dir, opts.objectOnly ? `${name}.o` : `lib${name}.so`);
  const src = join(dir, files[0]!.path);
  return { hash, dir, out, src, files, args: [...flags, "-I", dir, ...link, ...(opts.keep ? ["--keep", "--keep-dir", dir] : [])] };
}

export function buildCudaLibrary(code: { files: readonly GeneratedFile[] }, opts: CudaBuildOptions = {}): BuiltLibrary {
  const p = plan(code.files, opts);
  if (existsSync(p.out)) return { path: p.out, hash: p.hash, cached: true, sourcePath: p.src };
  writeGenerated(p.dir, p.files);
  const tmp = `${p.out}.tmp-${process.pid}`;
  const r = execaSync(nvccPath(), [...p.args, "-o", tmp, p.src], { reject: false });
  return finish(p, tmp, r.exitCode ?? 1, String(r.stderr));
}

/** The same, without blocking (several builds can run side by side). */
export async function buildCudaLibraryAsync(code: { files: readonly GeneratedFile[] }, opts: CudaBuildOptions = {}): Promise<BuiltLibrary> {
  const p = plan(code.files, opts);
  if (existsSync(p.out)) return { path: p.out, hash: p.hash, cached: true, sourcePath: p.src };
  writeGenerated(p.dir, p.files);
  const tmp = `${p.out}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const r = await execa(nvccPath(), [...p.args, "-o", tmp, p.src], { reject: false });
  return finish(p, tmp, r.exitCode ?? 1, String(r.stderr));
}

function finish(p: ReturnType<typeof plan>, tmp: string, code: number, stderr: string): BuiltLibrary {
  if (code !== 0) {
    rmSync(tmp, { force: true });
    throw new QzoError(cudaErrorLine(stderr, p.src));
  }
  renameSync(tmp, p.out);
  return { path: p.out, hash: p.hash, cached: false, sourcePath: p.src };
}

/** The first nvcc error as one line, with the generated source line it names. */
export function cudaErrorLine(stderr: string, src: string): string {
  // nvcc front end: "file.cu(123): error: ...", host compiler: "file.cu:123:4: error: ...", ptxas: "ptxas ... error ..."
  const m = /^(.*?)\((\d+)\): (?:catastrophic )?error:? (.*)$/m.exec(stderr) ?? /^(.*?):(\d+):\d+: (?:fatal )?error: (.*)$/m.exec(stderr);
  if (!m) return `the generated CUDA (${src}) did not compile: ${stderr.split("\n").find((l) => /error/i.test(l))?.trim() ?? stderr.split("\n").find((l) => l.trim()) ?? "no message"}`;
  const line = m[1] && existsSync(m[1]) && /\.cuh?$/.test(m[1]) ? readFileSync(m[1], "utf8").split("\n")[Number(m[2]) - 1]?.trim() ?? "" : "";
  return `the generated CUDA did not compile: ${m[1]}:${m[2]}: ${m[3]}${line ? ` [in: ${line}]` : ""}`;
}
