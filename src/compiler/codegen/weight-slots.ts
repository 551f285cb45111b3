/**
 * Where each parameter's data is passed to a generated library (the "weight slots"): per parameter
 * and layer, its float data, or its packed codes and fp32 scales, mins and zero-points (and, for
 * additive codebooks, the layer's codebooks as fp32 [M, entries, V]: "books"). The byte
 * size of each slot is part of the ABI, so a backend can check every array before a call.
 */
import { DTYPE_BITS, type ModuleIR } from "../ir/ir.js";
import { additiveCodebook, configInts, evalConcrete, formatOf, paramLayers, paramShape, scaleCount } from "../ir/queries.js";

export interface WeightSlot {
  /** `wq[3].codes`, `norm.data` ... */
  name: string;
  param: string;
  layer?: number;
  part: "data" | "codes" | "scales" | "mins" | "zeros" | "books";
  /** Byte size of the host array: f32 data, packed codes as stored, one fp32 per scale. */
  bytes: number;
}

/** The slots of every parameter, in module order, each layer of an array in turn. */
export function weightSlots(m: ModuleIR): WeightSlot[] {
  const env = configInts(m);
  const slots: WeightSlot[] = [];
  for (const p of m.params) {
    const f = formatOf(m, p);
    const shape = paramShape(m, p, env);
    const [rows, cols] = shape as [number, number];
    const bytes = (part: WeightSlot["part"]): number => {
      if (!f || part === "data") return 4 * shape.reduce((a, b) => a * b, 1);
      if (part === "books") return 4 * additiveCodebook(f)!.shape.reduce((a, b) => a * b, 1);
      if (part !== "codes") return 4 * scaleCount(f, rows, cols);
      if (f.layout.kind === "record") return rows * (cols / f.block.size) * f.layout.bytes;
      const field = f.layout.fields.find((x) => x.field === "code")!;
      const dims = new Map([["in", cols], ["out", rows]]);
      return field.shape.map((d) => evalConcrete(d, dims)).reduce((a, b) => a * b, 1) * (DTYPE_BITS[field.dtype] / 8);
    };
    for (const layer of paramLayers(p, env)) {
      const at = `${p.name}${layer === undefined ? "" : `[${layer}]`}`;
      const parts: WeightSlot["part"][] = f
        ? ["codes", "scales", ...(f.min ? ["mins" as const] : []), ...(f.zero ? ["zeros" as const] : []), ...(additiveCodebook(f) ? ["books" as const] : [])]
        : ["data"];
      for (const part of parts) slots.push({ name: `${at}.${part}`, param: p.name, ...(layer === undefined ? {} : { layer }), part, bytes: bytes(part) });
    }
  }
  return slots;
}
