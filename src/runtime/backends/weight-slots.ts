/**
 * What both kernel backends hand to a generated library: the arrays of every
 * weight slot (float data, packed codes, fp32 scales, mins, zero-points), the
 * master copies of the trainable tensors among them, and the values of a
 * graph's dimension names bound from its inputs' shapes.
 */
import type { ModuleIR } from "../../compiler/ir/ir.js";
import type { CpuGraphManifest } from "../../compiler/codegen/cpu.js";
import { formatOf, type WeightSlot } from "../../compiler/codegen/weights.js";
import { QzoError } from "../../util/errors.js";
import type { TrainableTensor } from "../interpret/interpreter.js";
import { evalIntExpr, isPlainName, solveIntExpr } from "../../compiler/ir/int-expr.js";
import type { BoundModel } from "../load/bind.js";
import { unpackRaw } from "../quant/codec.js";
import type { KernelArg } from "../../native/index.js";
import type { Batch, PerturbSpec, UpdateSpec } from "../train/backend.js";

/** What a kernel backend needs of a model: its checked module and its stored weights. */
export type StoredModel = Pick<BoundModel, "module" | "stored">;

/** The arrays of every weight slot, and the master copies (the scale arrays of trainable tensors). */
export function weightArrays(
  bound: StoredModel,
  weights: readonly WeightSlot[],
  trainables: readonly TrainableTensor[],
  backend: string,
  expectedBytes?: readonly number[],
): { slots: (Float32Array | Uint8Array)[]; masters: Float32Array[] } {
  const m = bound.module;
  const byKey = new Map<string, Float32Array | Uint8Array>();
  const parts = new Map<string, ReturnType<typeof quantParts>>();
  const slots = weights.map((s, i) => {
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
    if (expectedBytes && arr.byteLength !== expectedBytes[i]) {
      throw new QzoError(`${m.name}: weight slot ${s.name} holds ${arr.byteLength} bytes, the compiled spec expects ${expectedBytes[i]}`);
    }
    byKey.set(`${key}.${s.part}`, arr);
    return arr;
  });
  const masters = trainables.map((t) => {
    const part = t.field === "scale" ? "scales" : t.field === "min" ? "mins" : "data";
    const a = byKey.get(`${t.param}#${t.layer ?? ""}.${part}`);
    if (!(a instanceof Float32Array)) throw new QzoError(`the ${backend} backend cannot train ${t.param}${t.layer === undefined ? "" : `[${t.layer}]`}.${t.field}`);
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
export function bindDims(m: ModuleIR, g: CpuGraphManifest, inputs: Batch): Map<string, number> {
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
      const v = solveIntExpr(p.expr, names[0]!, p.size, env);
      if (v === undefined) throw new QzoError(`${g.name}: input '${p.input}' has size ${p.size} where ${p.expr} is expected`);
      env.set(names[0]!, v);
    } else if (evalIntExpr(p.expr, env) !== p.size) {
      throw new QzoError(`${g.name}: input '${p.input}' has size ${p.size} where ${p.expr} = ${evalIntExpr(p.expr, env)} is expected`);
    }
  }
  return env;
}

/**
 * The arguments of `qzo_run_<graph>` (the calling convention of src/compiler/codegen/cpu.ts, which
 * the CUDA library shares): inputs, output, weight slots, then the graph's dimensions, the
 * perturbation (sign 0: none) and the thread count.
 */
export function runArgs(
  m: ModuleIR,
  g: CpuGraphManifest,
  inputs: Batch,
  out: Float32Array | Int32Array,
  slots: readonly (Float32Array | Uint8Array)[],
  threads: number,
  p?: PerturbSpec,
): KernelArg[] {
  const dims = bindDims(m, g, inputs);
  return [
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
    threads,
  ];
}

/** The arguments of a library's `qzo_update`: the master arrays, then the update's scalars. */
export function updateArgs(masters: readonly Float32Array[], u: UpdateSpec): KernelArg[] {
  return [...masters, u.seedLo, u.seedHi, u.d, u.lr, u.epsMode === "relative" ? 1 : 0, u.dist === "rademacher" ? 1 : 0, u.floor];
}

/** Copies trainer values into the master arrays (Backend.setValues), checking each length. */
export function setMasters(masters: readonly Float32Array[], values: readonly Float32Array[]): void {
  values.forEach((v, t) => {
    if (v.length !== masters[t]!.length) throw new QzoError(`trainable tensor ${t}: ${v.length} values, expected ${masters[t]!.length}`);
    masters[t]!.set(v);
  });
}
