/**
 * The CPU backend: the spec compiled to C++ (src/compiler/codegen/cpu.ts),
 * built once and cached, loaded through the native addon, and fed the bound
 * model's weights without copies. Quantized weights stay packed; their scales
 * are fp32 arrays, and for trainable tensors those arrays ARE the trainer's
 * master copies: the kernels perturb them inline and `qzo_update` steps them
 * in place.
 */
import { availableParallelism } from "node:os";
import { buildCpuLibrary, type BuiltLibrary } from "../../compiler/build/build-cpu.js";
import { generateCpu, type CpuGraphManifest, type CpuManifest } from "../../compiler/codegen/cpu.js";
import { openKernelLibrary } from "../../native/index.js";
import { QzoError } from "../../util/errors.js";
import { trainableTensors } from "../interpret/interpreter.js";
import type { Backend, Batch, PerturbSpec, UpdateSpec } from "../train/backend.js";
import { runArgs, setMasters, updateArgs, weightArrays, type StoredModel } from "./weight-slots.js";

export type { StoredModel };

export interface CpuBackendOptions {
  /** The loss graph to train with (e.g. "lm"). */
  loss: string;
  threads?: number;
  /** Generate the unfused baseline instead (for benchmarks). */
  unfused?: boolean;
}

export interface CpuBackend extends Backend {
  readonly library: BuiltLibrary;
  readonly manifest: CpuManifest;
  /** The forward graph's logits, [B, T, vocab]. */
  forward(tokens: Int32Array, batch: number, seq: number): Float32Array;
  close(): void;
}

export function createCpuBackend(bound: StoredModel, opts: CpuBackendOptions): CpuBackend {
  const m = bound.module;
  const graphs = [opts.loss, ...(m.graphs.some((g) => g.name === "forward") && opts.loss !== "forward" ? ["forward"] : [])];
  const gen = generateCpu(m, graphs, { unfused: Boolean(opts.unfused) });
  const library = buildCpuLibrary(gen.source);
  const lib = openKernelLibrary(library.path);
  const trainables = trainableTensors(m);
  const { slots, masters } = weightArrays(bound, gen.manifest.weights, trainables, "CPU");
  const threads = opts.threads ?? Number(process.env["QZO_THREADS"] ?? 0);
  const nThreads = threads > 0 ? threads : availableParallelism();

  const run = (g: CpuGraphManifest, inputs: Batch, out: Float32Array, p?: PerturbSpec) => {
    const args = runArgs(m, g, inputs, out, slots, nThreads, p);
    lib.run(`qzo_run_${g.name}`, args);
  };
  const graph = (name: string) => gen.manifest.graphs.find((g) => g.name === name)!;
  const lossGraph = graph(opts.loss);

  return {
    name: "cpu",
    trainables,
    library,
    manifest: gen.manifest,
    loss(batch, perturb) {
      const out = new Float32Array(1);
      run(lossGraph, batch, out, perturb);
      return out[0]!;
    },
    forward(tokens, batch, seq) {
      const g = graph("forward");
      if (!g) throw new QzoError(`${m.source}: the spec has no 'forward' graph`);
      const vocab = m.config.find((c) => c.name === "vocab")?.value.value as number;
      const out = new Float32Array(batch * seq * vocab);
      run(g, { tokens: { shape: [batch, seq], data: tokens } }, out);
      return out;
    },
    update(u: UpdateSpec) {
      lib.run("qzo_update", updateArgs(masters, u));
    },
    values() {
      return masters;
    },
    setValues(values) {
      setMasters(masters, values);
    },
    close() {
      lib.close();
    },
  };
}
