/**
 * The in-memory forms of a quantized parameter, shared by the codec (packing
 * and unpacking any declared format), the reference interpreter and the
 * trainer.
 *
 * A quantized matrix W has logical shape [rows = out, cols = in]. Its scales
 * form the "scale tensor": one scale per block, laid out row-major as
 * [rows, cols / block] for blocks along `in`, [rows / block, cols] along
 * `out`, [rows] for a scale per row and [1] per tensor. The flat row-major
 * index into the scale tensor is the element index i of the random-direction
 * contract (src/runtime/rng/direction.ts); mins and zero-points use the same
 * indexing.
 */
import type { FormatIR } from "../../compiler/ir/ir.js";

/** Raw storage as found in a checkpoint: one byte buffer per storage tensor. */
export interface PackedTensor {
  format: FormatIR;
  rows: number;
  cols: number;
  /** Record layouts: { blocks: all records in row-major block order }. Tensor layouts: by tensor name. */
  storage: Record<string, Uint8Array>;
}

/**
 * A quantized matrix, unpacked for computation: w[r, c] = scales[s] * values[r*cols + c] + (mins?.[s] ?? 0)
 * with s = scaleIndex(format, cols, r, c). `values` already folds in the code offset, the
 * lookup table or codebooks and the zero-point, so every format dequantizes the same way.
 */
export interface UnpackedTensor {
  format: FormatIR;
  rows: number;
  cols: number;
  values: Float32Array;
  scales: Float32Array;
  mins?: Float32Array;
}


/** Flat index of the scale of element (r, c). */
export function scaleIndex(f: FormatIR, cols: number, r: number, c: number): number {
  if (f.scale.per === "tensor") return 0;
  if (f.scale.per === "row") return r;
  const b = f.block.size;
  if (f.block.axis === "flat") return Math.floor((r * cols + c) / b);
  return f.block.axis === "in" ? r * (cols / b) + Math.floor(c / b) : Math.floor(r / b) * cols + c;
}
