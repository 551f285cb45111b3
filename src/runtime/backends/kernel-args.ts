/**
 * The arguments a generated kernel library takes, built from the ABI its manifest describes
 * (src/compiler/abi.ts): the host arrays of every weight slot (float data, packed codes, fp32
 * scales, mins, zero-points), checked against the slot's byte size; the master copies of the
 * trainable tensors among them; a graph's pointers and named scalars for one call; `qzo_update`'s.
 */
import { scalarArgs, type GraphAbi, type Manifest } from "../../compiler/abi.js";
import { evalIntExpr, isPlainName, namesIn, solveIntExpr } from "../../compiler/ir/int-expr.js";
import type { ModuleIR } from "../../compiler/ir/ir.js";
import { configInts, formatOf, paramOf } from "../../compiler/ir/queries.js";
import { QzoError } from "../../util/errors.js";
import type { KernelArg } from "../../native/index.js";
import type { BoundModel } from "../load/bind.js";
import { unpackFields } from "../quant/codec.js";
import type { PackedTensor } from "../quant/types.js";
import type { Batch, PerturbSpec, UpdateSpec } from "./backend.js";

/** What a kernel backend needs of a model: its checked module and its stored weights. */
export type StoredModel = Pick<BoundModel, "module" | "stored">;

/** The arrays of every weight slot, and the master copies (the scale arrays of trainable tensors). */
export function weightArrays(bound: StoredModel, manifest: Manifest, backend: string): { slots: (Float32Array | Uint8Array)[]; masters: Float32Array[] } {
  const m = bound.module;
  const parts = new Map<string, ReturnType<typeof quantParts>>();
  const slots = manifest.weights.map((s) => {
    const w = bound.stored(s.param, s.layer);
    let arr: Float32Array | Uint8Array | undefined;
    if (s.part === "data") {
      if (w.kind !== "float") throw new QzoError(`${m.name}: '${w.tensor}' is quantized, but the compiled spec expects floats for '${s.param}'`);
      arr = w.data;
    } else {
      if (w.kind !== "quant") throw new QzoError(`${m.name}: '${w.tensor}' is not quantized, but the compiled spec expects '${s.param}' quantized`);
      const key = `${s.param}#${s.layer ?? ""}`;
      let q = parts.get(key);
      if (!q) {
        q = quantParts(m, s.param, w.packed);
        parts.set(key, q);
      }
      arr = q[s.part];
      if (!arr) throw new QzoError(`internal: no ${s.part} for ${s.name}`);
    }
    if (arr.byteLength !== s.bytes) throw new QzoError(`${m.name}: weight slot ${s.name} holds ${arr.byteLength} bytes, the compiled spec expects ${s.bytes}`);
    return arr;
  });
  const masters = manifest.trainables.map((t) => {
    const a = slots[t.slot];
    if (!(a instanceof Float32Array)) throw new QzoError(`the ${backend} backend cannot train ${t.param}${t.layer === undefined ? "" : `[${t.layer}]`}.${t.field}`);
    return a;
  });
  return { slots, masters };
}

function quantParts(m: ModuleIR, param: string, packed: PackedTensor): { codes: Uint8Array; scales: Float32Array; mins?: Float32Array; zeros?: Float32Array; books?: Float32Array } {
  const f = formatOf(m, paramOf(m, param));
  if (!f) throw new QzoError(`internal: '${param}' has no format`);
  const raw = unpackFields(packed);
  const codes = f.layout.kind === "record" ? packed.storage["blocks"]! : packed.storage[f.layout.fields.find((x) => x.field === "code")!.tensor]!;
  const zeros = raw.zeros && f.zero ? Float32Array.from(raw.zeros, (z) => z + f.zero!.adjust) : undefined;
  return {
    codes,
    scales: raw.scales,
    ...(raw.mins ? { mins: raw.mins } : {}),
    ...(zeros ? { zeros } : {}),
    ...(raw.codebooks ? { books: raw.codebooks } : {}),
  };
}

/** The graph's dimension values from its inputs' shapes (plain names first, then composite ones). */
export function bindDims(m: ModuleIR, g: GraphAbi, inputs: Batch): Map<string, number> {
  const env = configInts(m);
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
  // Composite dimensions in rounds: each solves the ones with a single unknown name (h of h * patch),
  // which may leave one unknown in others (h * w), until every one is checked.
  let left = pending;
  while (left.length) {
    const next = left.filter((p) => {
      const names = [...namesIn(p.expr)].filter((n) => !env.has(n));
      if (names.length > 1) return true;
      if (names.length === 1) {
        const v = solveIntExpr(p.expr, names[0]!, p.size, env);
        if (v === undefined) throw new QzoError(`${g.name}: input '${p.input}' has size ${p.size} where ${p.expr} is expected`);
        env.set(names[0]!, v);
      } else if (evalIntExpr(p.expr, env) !== p.size) {
        throw new QzoError(`${g.name}: input '${p.input}' has size ${p.size} where ${p.expr} = ${evalIntExpr(p.expr, env)} is expected`);
      }
      return false;
    });
    if (next.length === left.length) throw new QzoError(`${g.name}: input '${next[0]!.input}' has a dimension ${next[0]!.expr} whose names no other input gives`);
    left = next;
  }
  return env;
}

/** The arguments of one call of a graph's entry point, by its ABI: pointers, then named scalars. */
export function runArgs(
  m: ModuleIR,
  g: GraphAbi,
  inputs: Batch,
  out: Float32Array | Int32Array,
  slots: readonly (Float32Array | Uint8Array)[],
  threads: number,
  p?: PerturbSpec,
): KernelArg[] {
  const dims = bindDims(m, g, inputs);
  const pointers = g.pointers.flatMap((a): KernelArg[] => {
    if (a.kind === "output") return [out];
    if (a.kind === "weights") return [...slots];
    const v = inputs[a.name];
    if (!v) throw new QzoError(`${g.name}: missing input '${a.name}'`);
    return [v.data];
  });
  const values: Record<string, number> = {
    ...Object.fromEntries(g.dims.map((d) => [`dim:${d}`, dims.get(d)!])),
    seed_lo: p?.seedLo ?? 0,
    seed_hi: p?.seedHi ?? 0,
    sign: p?.sign ?? 0,
    eps: p?.eps ?? 0,
    relative: p?.epsMode === "relative" ? 1 : 0,
    rademacher: p?.dist === "rademacher" ? 1 : 0,
    period: p?.period ?? 1,
    threads,
  };
  return [...pointers, ...scalarArgs(g.scalars, values, g.entry)];
}

/** The arguments of a library's `qzo_update`: the master arrays, then the update's named scalars. */
export function updateArgs(manifest: Manifest, masters: readonly Float32Array[], u: UpdateSpec): KernelArg[] {
  const values = { seed_lo: u.seedLo, seed_hi: u.seedHi, d: u.d, lr: u.lr, relative: u.epsMode === "relative" ? 1 : 0, rademacher: u.dist === "rademacher" ? 1 : 0, period: u.period ?? 1, floor: u.floor };
  return [...masters, ...scalarArgs(manifest.update.scalars, values, manifest.update.entry)];
}

/** Copies trainer values into the master arrays (Backend.setValues), checking each length. */
export function setMasters(masters: readonly Float32Array[], values: readonly Float32Array[]): void {
  values.forEach((v, t) => {
    if (v.length !== masters[t]!.length) throw new QzoError(`trainable tensor ${t}: ${v.length} values, expected ${masters[t]!.length}`);
    masters[t]!.set(v);
  });
}
