/**
 * The CPU backend: the spec compiled to C++ (src/compiler/codegen/cpu.ts),
 * built once and cached, loaded through the native addon, and fed the bound
 * model's weights without copies. Quantized weights stay packed; their scales
 * are fp32 arrays, and for trainable tensors those arrays ARE the trainer's
 * master copies: the kernels perturb them inline and `qzo_update` steps them
 * in place.
 */
import { availableParallelism } from "node:os";
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { buildCpuLibrary, type BuiltLibrary } from "../../compiler/build/build-cpu.js";
import { generateCpu, type CpuGraphManifest, type CpuManifest } from "../../compiler/codegen/cpu.js";
import { formatOf } from "../../compiler/codegen/weights.js";
import { openKernelLibrary, type KernelArg } from "../../native/index.js";
import { QzoError } from "../../util/errors.js";
import { trainableTensors, type TrainableTensor } from "../interpret/interpreter.js";
import { evalDim, isPlainName, solveDim } from "../interpret/dims.js";
import type { BoundModel } from "../load/bind.js";
import { unpackRaw } from "../quant/codec.js";
import type { Backend, Batch, PerturbSpec, UpdateSpec } from "../train/backend.js";

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

/** What the CPU backend needs of a model: its checked module and its stored weights. */
export type StoredModel = Pick<BoundModel, "module" | "stored">;

export function createCpuBackend(bound: StoredModel, opts: CpuBackendOptions): CpuBackend {
  const m = bound.module;
  const graphs = [opts.loss, ...(m.graphs.some((g) => g.name === "forward") && opts.loss !== "forward" ? ["forward"] : [])];
  const gen = generateCpu(m, graphs, { unfused: Boolean(opts.unfused) });
  const library = buildCpuLibrary(gen.source);
  const lib = openKernelLibrary(library.path);
  const trainables = trainableTensors(m);
  const { slots, masters } = weightArrays(bound, gen.manifest, trainables);
  const threads = opts.threads ?? Number(process.env["QZO_THREADS"] ?? 0);
  const nThreads = threads > 0 ? threads : availableParallelism();

  const run = (g: CpuGraphManifest, inputs: Batch, out: Float32Array, p?: PerturbSpec) => {
    const dims = bindDims(m, g, inputs);
    const args: KernelArg[] = [
      ...g.inputs.map((i) => {
        const v = inputs[i.name];
        if (!v) throw new QzoError(`${g.name}: missing input '${i.name}'`);
        return v.data;
      }),
      out,
      ...slots,
      ...g.dims.map((d) => dims.get(d)!),
      p?.seedLo ?? 0,
      p?.seedHi ?? 0,
      p?.sign ?? 0,
      p?.eps ?? 0,
      p?.epsMode === "relative" ? 1 : 0,
      p?.dist === "rademacher" ? 1 : 0,
      nThreads,
    ];
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
      lib.run("qzo_update", [...masters, u.seedLo, u.seedHi, u.d, u.lr, u.epsMode === "relative" ? 1 : 0, u.dist === "rademacher" ? 1 : 0, u.floor]);
    },
    values() {
      return masters;
    },
    setValues(values) {
      values.forEach((v, t) => {
        if (v.length !== masters[t]!.length) throw new QzoError(`trainable tensor ${t}: ${v.length} values, expected ${masters[t]!.length}`);
        masters[t]!.set(v);
      });
    },
    close() {
      lib.close();
    },
  };
}

/** The arrays of every weight slot, and the master copies (the scale arrays of trainable tensors). */
function weightArrays(bound: StoredModel, man: CpuManifest, trainables: TrainableTensor[]): { slots: (Float32Array | Uint8Array)[]; masters: Float32Array[] } {
  const m = bound.module;
  const byKey = new Map<string, Float32Array | Uint8Array>();
  const parts = new Map<string, ReturnType<typeof quantParts>>();
  const slots = man.weights.map((s) => {
    const key = `${s.param}#${s.layer ?? ""}`;
    const w = bound.stored(s.param, s.layer);
    if (s.part === "data") {
      if (w.kind !== "float") throw new QzoError(`${bound.module.name}: '${w.tensor}' is quantized, but the compiled spec expects floats for '${s.param}'`);
      return w.data;
    }
    if (w.kind !== "quant") throw new QzoError(`${bound.module.name}: '${w.tensor}' is not quantized, but the compiled spec expects '${s.param}' quantized`);
    let q = parts.get(key);
    if (!q) {
      q = quantParts(m, s.param, w.packed);
      parts.set(key, q);
    }
    const arr = q[s.part as "codes" | "scales" | "mins" | "zeros"];
    if (!arr) throw new QzoError(`internal: no ${s.part} for ${s.name}`);
    byKey.set(`${key}.${s.part}`, arr);
    return arr;
  });
  const masters = trainables.map((t) => {
    const part = t.field === "scale" ? "scales" : t.field === "min" ? "mins" : "data";
    const a = byKey.get(`${t.param}#${t.layer ?? ""}.${part}`);
    if (!(a instanceof Float32Array)) throw new QzoError(`the CPU backend cannot train ${t.param}${t.layer === undefined ? "" : `[${t.layer}]`}.${t.field}`);
    return a;
  });
  return { slots, masters };
}

function quantParts(m: ModuleIR, param: string, packed: { format: { name: string; zero?: { adjust: number }; layout: { kind: string; fields: { field: string; tensor?: string }[] } }; storage: Record<string, Uint8Array>; rows: number; cols: number }) {
  const p = m.params.find((x) => x.name === param)!;
  const f = formatOf(m, p);
  if (!f) throw new QzoError(`internal: '${param}' has no format`);
  const raw = unpackRaw(packed as Parameters<typeof unpackRaw>[0]);
  const codes = f.layout.kind === "record" ? packed.storage["blocks"]! : packed.storage[f.layout.fields.find((x) => x.field === "code")!.tensor]!;
  const zeros = raw.zeros && f.zero ? Float32Array.from(raw.zeros, (z) => z + f.zero!.adjust) : undefined;
  return { codes, scales: Float32Array.from(raw.scales), ...(raw.mins ? { mins: Float32Array.from(raw.mins) } : {}), ...(zeros ? { zeros } : {}) };
}

/** The graph's dimension values from its inputs' shapes (plain names first, then composite ones). */
function bindDims(m: ModuleIR, g: CpuGraphManifest, inputs: Batch): Map<string, number> {
  const env = new Map<string, number>();
  for (const c of m.config) if (c.value.type === "int") env.set(c.name, c.value.value);
  const pending: { expr: string; size: number; input: string }[] = [];
  for (const i of g.inputs) {
    const v = inputs[i.name];
    if (!v) throw new QzoError(`${g.name}: missing input '${i.name}'`);
    if (v.shape.length !== i.shape.length) throw new QzoError(`${g.name}: input '${i.name}' has ${v.shape.length} dimensions, expected ${i.shape.length}`);
    i.shape.forEach((d, k) => {
      if (isPlainName(d) && !env.has(d)) env.set(d, v.shape[k]!);
      else pending.push({ expr: d, size: v.shape[k]!, input: i.name });
    });
  }
  for (const p of pending) {
    const names = [...p.expr.matchAll(/[A-Za-z_][A-Za-z0-9_]*/g)].map((x) => x[0]).filter((n) => !env.has(n));
    if (names.length === 1) {
      const v = solveDim(p.expr, names[0]!, p.size, env);
      if (v === undefined) throw new QzoError(`${g.name}: input '${p.input}' has size ${p.size} where ${p.expr} is expected`);
      env.set(names[0]!, v);
    } else if (evalDim(p.expr, env) !== p.size) {
      throw new QzoError(`${g.name}: input '${p.input}' has size ${p.size} where ${p.expr} = ${evalDim(p.expr, env)} is expected`);
    }
  }
  return env;
}
