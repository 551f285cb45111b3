/**
 * The device's roofline, measured in the same run as the kernels it judges: the bandwidth of a
 * streaming triad and the peak FLOP rate of independent FMA chains (CPU: fp32 vectors on the
 * benchmark's thread count; CUDA: fp32 cores and f16 tensor cores), from the probe sources in
 * templates/{cpu,cuda}/bench/, built and cached like generated kernels.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { buildCpuLibrary, type BuiltLibrary } from "../../compiler/build/build-cpu.js";
import { buildCudaLibrary, type CudaBuildOptions } from "../../compiler/build/build-cuda.js";
import { openKernelLibrary } from "../../native/index.js";
import { packageRoot } from "../../util/package-root.js";

export interface Roofline {
  /** Bytes per second of the triad (12 bytes per element: two reads, one write). */
  bandwidth: number;
  /** Peak FLOP/s of the matmul kernels' arithmetic (CPU: fp32 FMA; CUDA: f16 tensor cores). */
  flops: number;
  /** CUDA only: the fp32 FMA rate of the CUDA cores. */
  fp32Flops?: number;
  /** How it was measured, in words. */
  method: string;
}

function probeSource(target: "cpu" | "cuda"): { path: string; text: string } {
  const path = target === "cpu" ? "roofline.cpp" : "roofline.cu";
  return { path, text: readFileSync(join(packageRoot(), "templates", target, "bench", path), "utf8") };
}

/** The CPU probe library (built once per source, flags and compiler). */
function buildCpuProbe(): BuiltLibrary {
  return buildCpuLibrary({ files: [probeSource("cpu")] }, "roofline");
}

/** The CUDA probe library; `objectOnly` compiles without linking (what a machine without a GPU can check). */
export function buildCudaProbe(opts: CudaBuildOptions = {}): BuiltLibrary {
  return buildCudaLibrary({ files: [probeSource("cuda")] }, { name: "roofline", ...opts });
}

const best = (f: () => void, reps: number): number => {
  let t = Infinity;
  for (let r = 0; r < reps; r++) {
    const s = performance.now();
    f();
    t = Math.min(t, performance.now() - s);
  }
  return t / 1000;
};

/** The CPU roofline on `threads` threads: triad over three arrays of `arrayMiB` each, best of `reps`. */
export function measureCpuRoofline(threads: number, opts: { arrayMiB?: number; reps?: number } = {}): Roofline {
  const lib = openKernelLibrary(buildCpuProbe().path);
  try {
    const manifest = JSON.parse(lib.manifest()) as { lanes: number; chains: number };
    const n = ((opts.arrayMiB ?? 256) << 20) / 4;
    const reps = opts.reps ?? 5;
    const a = new Float32Array(n);
    const b = new Float32Array(n).fill(1);
    const c = new Float32Array(n).fill(2);
    const triadS = best(() => lib.run("qzo_triad", [a, b, c, n, threads]), reps);
    if (a[n - 1] !== 7) throw new Error(`the triad probe computed ${a[n - 1]} instead of 7`);
    const sums = new Float32Array(threads);
    const iterations = 1 << 24;
    const fmaS = best(() => lib.run("qzo_fma", [sums, iterations, threads]), reps);
    return {
      bandwidth: (12 * n) / triadS,
      flops: (2 * manifest.lanes * manifest.chains * iterations * threads) / fmaS,
      method: `triad over 3 x ${opts.arrayMiB ?? 256} MiB and ${manifest.chains} chains of ${manifest.lanes}-lane fp32 FMA, ${threads} thread(s), best of ${reps}`,
    };
  } finally {
    lib.close();
  }
}

/** The GPU roofline (the probe runs on the current CUDA device). */
export function measureCudaRoofline(): Roofline {
  const lib = openKernelLibrary(buildCudaProbe().path);
  try {
    const out = new Float64Array(4);
    lib.run("qzo_roofline", [out]);
    return {
      bandwidth: out[0]!,
      flops: out[2]!,
      fp32Flops: out[1]!,
      method: `triad over 3 x 256 MiB, fp32 FMA chains and mma.sync m16n8k16 (f16, f32 accumulate) on ${out[3]} SMs, best of 5`,
    };
  } finally {
    lib.close();
  }
}
