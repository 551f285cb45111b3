/**
 * The device code of a format reader (readers.ts): a struct with the weight's shape, how its scales
 * run along a row (SPLIT, KB: the tiles' scale groups), whether codes of adjacent rows are adjacent
 * (NMAJOR: the small-M kernel's row-per-lane layout), and `sidx`, `value` and `full` for element
 * (n, c), as qzo::RdF32 documents (templates/cuda/include/qzo/readers.cuh).
 */
import type { ReaderIR } from "../readers.js";
import { cCommentText, cIdentifier } from "../c/literal.js";
import { additiveSum, codeValue, valueTable } from "../c/reader-value.js";

export function cudaReader(r: ReaderIR): string {
  const name = cIdentifier(r.name, `format '${r.format}': the reader`);
  const value = codeValue(r, name);
  const table = valueTable(r, name);
  const sum = additiveSum(r, name, "__device__ static __forceinline__", (p) => `__ldg(${p})`);
  // Additive codebooks: scales per row, read per element (no scale groups along the tile's K).
  const split = !sum && r.scaleRun > 0 && r.scaleRun % 16 === 0;
  return [
    `// format ${cCommentText(`${r.format}: ${r.formula}`)}`,
    ...(table ? [`__device__ static const float ${table}`] : []),
    ...(sum ? [sum] : []),
    `struct ${name} {`,
    `  static constexpr int64_t ROWS = ${r.rows}, COLS = ${r.cols};`,
    `  static constexpr bool SPLIT = ${split}, HAS_MIN = ${r.min};`,
    `  static constexpr int KB = ${split ? r.scaleRun : 16};`,
    `  static constexpr bool NMAJOR = ${r.rowAdjacentCodes}, DIRECT16 = false;`,
    `  __device__ static __forceinline__ int64_t sidx(int64_t n, int64_t c) { (void)n; (void)c; return ${r.scaleIndex}; }`,
    `  __device__ static __forceinline__ float value(const qzo::WArg& w, int64_t n, int64_t c) {`,
    `    const uint8_t* codes = w.codes; (void)codes;`,
    `    const float* books = w.books; (void)books;`,
    r.zero ? `    const float zp = __ldg(w.zeros + sidx(n, c));` : `    const float zp = 0.0f; (void)zp;`,
    ...(sum ? [] : [`    const uint32_t q = qzo::read_bits(codes + ${r.codeByte}, ${r.codeBit}, ${r.bits});`]),
    `    return ${value}${r.zero ? " - zp" : ""};`,
    `  }`,
    `  __device__ static __forceinline__ float full(const qzo::WArg& w, int64_t n, int64_t c) {`,
    `    const int64_t si = sidx(n, c);`,
    `    const float s = __ldg(w.scales + si);`,
    `    const float v = value(w, n, c);`,
    r.min ? `    return (float)((double)s * (double)v + (double)__ldg(w.mins + si));` : `    return s * v;`,
    `  }`,
    `};`,
  ].join("\n");
}
