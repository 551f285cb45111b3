/**
 * The manifest of trainable tensors: THE numbering t of the random-direction
 * contract. For each entry of the train block's trainable list in order, an
 * array parameter contributes one tensor per layer (increasing), t = 0, 1, ...
 */
import type { ModuleIR } from "./ir.js";

export interface TrainableEntry {
  param: string;
  layer?: number;
  field: "scale" | "min" | "weight";
  /** The tensor number of the random-direction contract. */
  t: number;
}

export function trainableManifest(m: ModuleIR): TrainableEntry[] {
  const ints = new Map<string, number>();
  for (const c of m.config) if (c.value.type === "int") ints.set(c.name, c.value.value);
  const bound = (e: string) => {
    const v = ints.get(e) ?? Number(e);
    if (!Number.isInteger(v)) throw new Error(`internal: loop bound '${e}' is not a config entry or a number`);
    return v;
  };
  const out: TrainableEntry[] = [];
  for (const tr of m.train.trainable) {
    const p = m.params.find((q) => q.name === tr.param);
    if (!p) throw new Error(`internal: trainable '${tr.param}' is no parameter`);
    if (p.array) {
      for (let l = bound(p.array.from); l < bound(p.array.to); l++) out.push({ param: tr.param, layer: l, field: tr.field, t: out.length });
    } else {
      out.push({ param: tr.param, field: tr.field, t: out.length });
    }
  }
  return out;
}
