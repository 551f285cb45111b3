/**
 * The C++ of a format reader (readers.ts): `static inline void NAME(codes, scales, mins, zeros, books, n,
 * out, P, t, trainable, t_min, trainable_min)` writes row n of the weight, dequantized, into
 * out[cols]. Each scale is read, and perturbed by the numerics contract when its tensor is
 * trainable, once per run of columns that share it.
 */
import type { ReaderIR } from "../readers.js";
import { cCommentText, cIdentifier } from "../c/literal.js";
import { additiveSum, codeValue, valueTable } from "../c/reader-value.js";

export function cpuReader(r: ReaderIR): string {
  const name = cIdentifier(r.name, `format '${r.format}': the reader`);
  const q = `qzo::read_bits(codes + ${r.codeByte}, ${r.codeBit}, ${r.bits})`;
  const value = codeValue(r, name);
  const table = valueTable(r, name);
  const sum = additiveSum(r, name, "static inline", (p) => `*(${p})`);
  const lines = [`// format ${cCommentText(`${r.format}: ${r.formula}`)}`, ...(table ? [`static const float ${table}`] : []), ...(sum ? [sum] : [])];
  lines.push(
    `static inline void ${name}(const uint8_t* codes, const float* scales, const float* mins, const float* zeros, const float* books, int64_t n, float* out, const qzo::Perturb& P, uint32_t t, bool trainable, uint32_t t_min, bool trainable_min) {`,
    `  (void)mins; (void)zeros; (void)books; (void)t_min; (void)trainable_min;`,
    `  int64_t last_s = -1; float s = 0.0f; float mn = 0.0f; float zp = 0.0f;`,
    `  for (int64_t c = 0; c < ${r.cols}; c++) {`,
    `    const int64_t si = ${r.scaleIndex};`,
    `    if (si != last_s) {`,
    `      last_s = si;`,
    `      s = trainable ? qzo::perturbed(scales[si], P, t, (uint64_t)si) : scales[si];`,
    r.min ? `      mn = trainable_min ? qzo::perturbed(mins[si], P, t_min, (uint64_t)si) : mins[si];` : `      (void)mn;`,
    r.zero ? `      zp = zeros[si];` : `      (void)zp;`,
    `    }`,
    ...(sum ? [] : [`    const uint32_t q = ${q};`]),
    `    const float v = ${value}${r.zero ? " - zp" : ""};`,
    `    out[c] = ${r.min ? "(float)((double)s * (double)v + (double)mn)" : "s * v"};`,
    `  }`,
    `}`,
  );
  return lines.join("\n");
}
