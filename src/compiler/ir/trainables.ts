/**
 * The manifest of trainable tensors: THE numbering t of the random-direction
 * contract. For each entry of the train block's trainable list in order, an
 * array parameter contributes one tensor per layer (increasing), t = 0, 1, ...
 */
import type { ModuleIR } from "./ir.js";
import { configInts, formatOf, paramLayers, paramOf, paramShape, scaleCount } from "./queries.js";

export interface TrainableEntry {
  param: string;
  layer?: number;
  field: "scale" | "min" | "weight";
  /** The tensor number of the random-direction contract. */
  t: number;
}

export function trainableManifest(m: ModuleIR): TrainableEntry[] {
  const ints = configInts(m);
  const out: TrainableEntry[] = [];
  for (const tr of m.train.trainable) {
    for (const layer of paramLayers(paramOf(m, tr.param), ints)) {
      out.push({ param: tr.param, ...(layer === undefined ? {} : { layer }), field: tr.field, t: out.length });
    }
  }
  return out;
}

/** The number of values of a trainable tensor: the weight's elements, or its scales (mins). */
export function trainableSize(m: ModuleIR, t: TrainableEntry): number {
  const p = paramOf(m, t.param);
  const shape = paramShape(m, p);
  if (t.field === "weight") return shape.reduce((a, b) => a * b, 1);
  const f = formatOf(m, p);
  if (!f) throw new Error(`internal: '${t.param}' is trained as ${t.field} but is not quantized`);
  return scaleCount(f, shape[0]!, shape[1]!);
}
