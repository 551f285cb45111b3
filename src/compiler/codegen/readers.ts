/**
 * Format readers as data: how to read element (n, c) of a [rows, cols] weight in a declared format,
 * derived from the format declaration alone, as integer expressions over the row `n` and the column
 * `c` (the grammar of ir/int-expr.ts, which is also valid C for these non-negative operands). Every
 * target prints the same description with its own expression printer; the TypeScript codec is the
 * reference that tests hold these descriptions to.
 *
 *   code  = bits [codeBit, codeBit + bits) of the little-endian bit stream at byte codeByte
 *   value = table[code]                     (a lookup table)
 *         | sum over m of books[m, code_m, c % V], added in order m = 0..M-1 in float32
 *                                           (additive codebooks: codeByte is over m too; the
 *                                            weight's own codebooks arrive as an fp32 slot)
 *         | signed(code) - offset           (an integer code; sign-extended when signed)
 *           minus the zero-point zeros[scaleIndex], when the format has one
 *   w     = scale * value (+ min)           scale, min, zero-point at scaleIndex, fp32
 */
import type { FormatIR } from "../ir/ir.js";
import { DTYPE_BITS } from "../ir/ir.js";
import { additiveCodebook, evalConcrete } from "../ir/queries.js";
import { renameNames } from "../ir/int-expr.js";
import { UnsupportedError } from "../../util/errors.js";
import { roundToDType } from "../../util/float-bits.js";

export interface ReaderIR {
  /** A C identifier: rd_<format>_<rows>x<cols>. */
  name: string;
  format: string;
  /** The dequantization formula, for people. */
  formula: string;
  rows: number;
  cols: number;
  /** Flat index of the scale (and min, zero-point) of element (n, c). */
  scaleIndex: string;
  /** Byte offset of the storage that holds the code of element (n, c). */
  codeByte: string;
  /** Bit offset of that code from codeByte. */
  codeBit: string;
  bits: number;
  /** An integer code, or an index into a lookup table (its values rounded to the table's dtype). */
  value:
    | { kind: "integer"; signed: boolean; offset: number }
    | { kind: "table"; table: string; values: readonly number[] }
    | { kind: "additive"; books: number; entries: number; size: number };
  zero: boolean;
  min: boolean;
  /** Columns of a row that share one scale (cols for per-row and per-tensor scales; 1 when blocks run along the rows, or flat blocks straddle rows). */
  scaleRun: number;
  /** The codes of adjacent output rows are adjacent in memory (a code tensor indexed [..., r], as GPTQ's qweight). */
  rowAdjacentCodes: boolean;
}

export function readerOf(f: FormatIR, rows: number, cols: number): ReaderIR {
  const additive = additiveCodebook(f);
  if (additive && f.layout.kind !== "tensors") throw new UnsupportedError(`format '${f.name}': additive codebooks are read from a tensors layout only`);
  const bs = f.block.size;
  const scaleIndex =
    f.scale.per === "tensor"
      ? "0"
      : f.scale.per === "row"
        ? "n"
        : f.block.axis === "in"
          ? `n * ${cols / bs} + c / ${bs}`
          : f.block.axis === "out"
            ? `(n / ${bs}) * ${cols} + c`
            : `(n * ${cols} + c) / ${bs}`;
  let codeByte: string;
  let codeBit: string;
  let rowAdjacentCodes = false;
  if (f.layout.kind === "record") {
    const field = f.layout.fields.find((x) => x.field === "code")!;
    // Records follow the scale order: [rows, cols / bs] for blocks along in, [rows / bs, cols] along out.
    const along = f.block.axis === "in";
    codeByte = along ? `(n * ${cols / bs} + c / ${bs}) * ${f.layout.bytes}` : `((n / ${bs}) * ${cols} + c) * ${f.layout.bytes}`;
    codeBit = renameNames(field.bitExpr, (v) => (v === field.index ? `(${along ? "c" : "n"} % ${bs})` : v));
  } else {
    const field = f.layout.fields.find((x) => x.field === "code")!;
    const dims = new Map([["in", cols], ["out", rows]]);
    const shape = field.shape.map((d) => evalConcrete(d, dims));
    const strides = shape.map((_, k) => shape.slice(k + 1).reduce((a, b) => a * b, 1));
    // m (the codebook of an additive code) stays a name: the reader loops over it.
    const block = f.block.axis === "flat" ? `((n * ${cols} + c) / ${bs})` : `(c / ${bs})`;
    const vars = (v: string) => (v === "r" ? "n" : v === "c" ? "c" : v === "b" ? block : v === "in" ? String(cols) : v === "out" ? String(rows) : v);
    const flat = field.at.map((e, k) => `(${renameNames(e, vars)}) * ${strides[k]}`).join(" + ");
    codeByte = `(${flat}) * ${DTYPE_BITS[field.dtype] / 8}`;
    codeBit = field.bit ? renameNames(field.bit, vars) : "0";
    rowAdjacentCodes = field.at[field.at.length - 1] === "r";
  }
  const table = f.codebooks.find((c) => c.name === f.code.lookup);
  return {
    name: `rd_${f.name}_${rows}x${cols}`,
    format: f.name,
    formula: f.formula,
    rows,
    cols,
    scaleIndex,
    codeByte,
    codeBit,
    bits: f.code.bits,
    value: additive
      ? { kind: "additive", books: additive.shape[0]!, entries: additive.shape[1]!, size: additive.shape[additive.shape.length - 1]! }
      : table
        ? { kind: "table", table: table.name, values: table.values!.map((v) => roundToDType(table.dtype, v)) }
        : { kind: "integer", signed: f.code.signed, offset: f.code.offset },
    zero: Boolean(f.zero),
    min: Boolean(f.min),
    scaleRun: f.scale.per === "tensor" || f.scale.per === "row" ? cols : f.block.axis === "in" || (f.block.axis === "flat" && cols % bs === 0) ? bs : 1,
    rowAdjacentCodes,
  };
}

/** The distinct readers of a parameter -> reader map (parameters of one format and shape share one), in order. */
export function distinctReaders(readers: ReadonlyMap<string, ReaderIR>): ReaderIR[] {
  return [...new Map([...readers.values()].map((r) => [r.name, r])).values()];
}
