/**
 * The CUDA backend: the spec compiled to CUDA (src/compiler/codegen/cuda.ts), built once into a
 * fat library (build-cuda.ts), loaded through the native addon, and driven exactly like the CPU
 * library: the same host arrays (packed codes, fp32 scales that ARE the trainer's master copies)
 * in the same ABI. The library copies weights to the device once, keyed by host pointer.
 *
 * Device-memory rule (docs/CUDA.md): after the first call the DEVICE copy of each trainable
 * tensor is the one the kernels read; `update` runs on it and the library copies the result back
 * into the host master array, so `values()` is always current. Whoever writes the host masters
 * (setValues: resume, keep-best restore) must call qzo_sync_masters, which setValues does.
 * Host weight arrays must not be modified or freed while the backend is open; close() frees the
 * device memory.
 */
import { existsSync, readdirSync } from "node:fs";
import { execaSync } from "execa";
import type { BuiltLibrary } from "../../compiler/build/build-cpu.js";
import { buildCudaLibrary, type CudaBuildOptions } from "../../compiler/build/build-cuda.js";
import { generateCuda, type CudaManifest } from "../../compiler/codegen/cuda.js";
import type { CpuGraphManifest } from "../../compiler/codegen/cpu.js";
import { openKernelLibrary, type KernelLibrary } from "../../native/index.js";
import { QzoError } from "../../util/errors.js";
import { trainableTensors } from "../interpret/interpreter.js";
import type { Backend, Batch, PerturbSpec, UpdateSpec } from "../train/backend.js";
import { runArgs, setMasters, updateArgs, weightArrays, type StoredModel } from "./weight-slots.js";

export interface CudaBackendOptions {
  /** The loss graph to train with (e.g. "lm"). */
  loss: string;
  /** Generate the unfused baseline instead (benchmarks). */
  unfused?: boolean;
  /** Build options (architectures, bf16 operands). */
  build?: CudaBuildOptions;
}

export interface CudaBackend extends Backend {
  readonly library: BuiltLibrary;
  readonly manifest: CudaManifest;
  readonly lib: KernelLibrary;
  /** The forward graph's logits, [B, T, vocab]. */
  forward(tokens: Int32Array, batch: number, seq: number): Float32Array;
  /** Runs a graph (inputs by name) into `out`, optionally perturbed. */
  run(graph: string, inputs: Batch, out: Float32Array | Int32Array, perturb?: PerturbSpec): void;
  /** Device memory: live and peak bytes of the library, weight bytes, device used and total. */
  memory(resetPeak?: boolean): { live: number; peak: number; weights: number; deviceUsed: number; deviceTotal: number };
  close(): void;
}

/** Whether this machine can run CUDA kernels at all, without building anything (for --device auto). */
export function cudaAvailable(): { ok: boolean; reason: string } {
  if (!findLibcuda()) return { ok: false, reason: "no CUDA driver (libcuda.so.1) found" };
  const nodes = existsSync("/dev") ? readdirSync("/dev").filter((n) => /^nvidia\d+$/.test(n)) : [];
  if (nodes.length === 0 && !existsSync("/dev/dxg")) return { ok: false, reason: "no CUDA device (no /dev/nvidia* device node)" };
  return { ok: true, reason: `CUDA driver found, ${nodes.length || 1} device node(s)` };
}

function findLibcuda(): boolean {
  const dirs = [
    ...(process.env["LD_LIBRARY_PATH"] ?? "").split(":").filter(Boolean),
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/nvidia/lib64",
    "/usr/lib/wsl/lib",
    "/usr/lib/aarch64-linux-gnu",
  ];
  if (dirs.some((d) => existsSync(`${d}/libcuda.so.1`))) return true;
  try {
    return /libcuda\.so\.1\b/.test(execaSync("ldconfig", ["-p"], { reject: false }).stdout ?? "");
  } catch {
    return false;
  }
}

const WHAT_TO_DO = "use --device cpu";

export function createCudaBackend(bound: StoredModel, opts: CudaBackendOptions): CudaBackend {
  const avail = cudaAvailable();
  if (!avail.ok) throw new QzoError(`cannot use the CUDA backend: ${avail.reason}; ${WHAT_TO_DO}`);
  const m = bound.module;
  const graphs = [opts.loss, ...(m.graphs.some((g) => g.name === "forward") && opts.loss !== "forward" ? ["forward"] : [])];
  const gen = generateCuda(m, graphs, { unfused: Boolean(opts.unfused) });
  const library = buildCudaLibrary(gen.source, opts.build ?? {});
  const lib = openKernelLibrary(library.path);
  if (lib.call("qzo_cuda_init", []) !== 0) {
    const why = lib.lastError() ?? "the CUDA runtime did not initialize";
    lib.close();
    throw new QzoError(`cannot use the CUDA backend: ${why}; ${WHAT_TO_DO}`);
  }
  const trainables = trainableTensors(m);
  const { slots, masters } = weightArrays(bound, gen.manifest.weights, trainables, "CUDA", gen.manifest.weightBytes);

  const run = (g: CpuGraphManifest, inputs: Batch, out: Float32Array | Int32Array, p?: PerturbSpec) => {
    const args = runArgs(m, g, inputs, out, slots, 1, p);
    lib.run(`qzo_run_${g.name}`, args);
  };
  const graph = (name: string) => {
    const g = gen.manifest.graphs.find((x) => x.name === name);
    if (!g) throw new QzoError(`${m.source}: the compiled spec has no graph '${name}'`);
    return g;
  };
  const lossGraph = graph(opts.loss);
  const stats = new Float64Array(6);

  return {
    name: "cuda",
    trainables,
    library,
    manifest: gen.manifest,
    lib,
    loss(batch, perturb) {
      const out = new Float32Array(1);
      run(lossGraph, batch, out, perturb);
      return out[0]!;
    },
    forward(tokens, batch, seq) {
      const vocab = m.config.find((c) => c.name === "vocab")?.value.value as number;
      const out = new Float32Array(batch * seq * vocab);
      run(graph("forward"), { tokens: { shape: [batch, seq], data: tokens } }, out);
      return out;
    },
    run(name, inputs, out, perturb) {
      run(graph(name), inputs, out, perturb);
    },
    update(u: UpdateSpec) {
      lib.run("qzo_update", updateArgs(masters, u));
    },
    values() {
      return masters;
    },
    setValues(values) {
      setMasters(masters, values);
      lib.run("qzo_sync_masters", [...masters]);
    },
    memory(resetPeak = false) {
      lib.run("qzo_cuda_stats", [stats, resetPeak ? 1 : 0]);
      return { live: stats[0]!, peak: stats[1]!, weights: stats[2]!, deviceUsed: stats[3]!, deviceTotal: stats[4]! };
    },
    close() {
      lib.call("qzo_release", []);
      lib.close();
    },
  };
}
