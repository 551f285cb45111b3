/**
 * Builds generated CUDA into ONE fat shared library per compiled spec with nvcc: machine code
 * for sm_80, sm_89 and sm_90a (one -gencode each), the CUDA runtime linked statically, cached
 * by a hash of the source, the flags and nvcc's version in the same cache directory as the CPU
 * libraries (build-cpu.ts cacheDir). A compile error is reported with the generated line it
 * points at; a missing nvcc is one QzoError line.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa, execaSync } from "execa";
import { QzoError } from "../../util/errors.js";
import { cacheDir, type BuiltLibrary } from "./build-cpu.js";

/** Target GPUs: A100 (sm_80), L4/L40/RTX 40 (sm_89), H100/H200 (sm_90a). */
export const CUDA_ARCHS = ["80", "89", "90a"] as const;

/** Flags of every CUDA compile: no fast math (the numerics contract), C++17, extended lambdas. */
export const CUDA_FLAGS = ["-O3", "-std=c++17", "--extended-lambda", "-Xcompiler", "-fPIC", "-lineinfo", "-diag-suppress", "177,128"];

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

function plan(source: string, opts: CudaBuildOptions) {
  const version = nvccVersion();
  const archs = opts.archs ?? CUDA_ARCHS;
  const name = opts.name ?? "kernels";
  const defines = Object.entries(opts.defines ?? {}).map(([k, v]) => `-D${k}=${v}`);
  const flags = [...CUDA_FLAGS, ...(opts.bf16 ? ["-DQZO_BF16"] : []), ...defines, ...archs.flatMap(gencode)];
  const link = opts.objectOnly ? ["-c"] : ["-shared", "-cudart", "static", "-ldl"];
  const hash = createHash("sha256").update(source).update("\0").update([...flags, ...link].join(" ")).update("\0").update(version).digest("hex").slice(0, 20);
  const dir = join(cacheDir(), `cuda-${hash}`);
  const out = join(dir, opts.objectOnly ? `${name}.o` : `lib${name}.so`);
  const src = join(dir, `${name}.cu`);
  return { hash, dir, out, src, args: [...flags, ...link, ...(opts.keep ? ["--keep", "--keep-dir", dir] : [])] };
}

export function buildCudaLibrary(source: string, opts: CudaBuildOptions = {}): BuiltLibrary {
  const p = plan(source, opts);
  if (existsSync(p.out)) return { path: p.out, hash: p.hash, cached: true, sourcePath: p.src };
  mkdirSync(p.dir, { recursive: true });
  writeFileSync(p.src, source);
  const tmp = `${p.out}.tmp-${process.pid}`;
  const r = execaSync(nvccPath(), [...p.args, "-o", tmp, p.src], { reject: false });
  return finish(p, tmp, r.exitCode ?? 1, String(r.stderr));
}

/** The same, without blocking (several builds can run side by side). */
export async function buildCudaLibraryAsync(source: string, opts: CudaBuildOptions = {}): Promise<BuiltLibrary> {
  const p = plan(source, opts);
  if (existsSync(p.out)) return { path: p.out, hash: p.hash, cached: true, sourcePath: p.src };
  mkdirSync(p.dir, { recursive: true });
  writeFileSync(p.src, source);
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
  const line = m[1] && existsSync(m[1]) && m[1].endsWith(".cu") ? readFileSync(m[1], "utf8").split("\n")[Number(m[2]) - 1]?.trim() ?? "" : "";
  return `the generated CUDA did not compile: ${m[1]}:${m[2]}: ${m[3]}${line ? ` [in: ${line}]` : ""}`;
}
