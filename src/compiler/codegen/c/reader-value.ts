/**
 * What the C-family readers (CPU and CUDA) share: the expression of a code's value (its lookup
 * table entry, the integer code sign-extended and offset, or an additive sum over codebooks) in
 * terms of the code `q`, the initializer of a lookup table, and the additive sum's function.
 */
import type { ReaderIR } from "../readers.js";
import { cFloat } from "./literal.js";

/**
 * The value of code `q` as a float expression; `name` is the reader's C identifier. An additive
 * reader's value is its `NAME_sum` (additiveSum) of the codes at (n, c), with `codes` and `books`
 * in scope.
 */
export function codeValue(r: ReaderIR, name: string): string {
  if (r.value.kind === "table") return `${name}_table[q]`;
  if (r.value.kind === "additive") return `${name}_sum(codes, books, n, c)`;
  const signed = r.value.signed ? `qzo::sign_extend(q, ${r.bits})` : "(int32_t)q";
  return r.value.offset ? `(float)(${signed} - ${r.value.offset})` : `(float)${signed}`;
}

/**
 * `NAME_sum`, the value of an additive reader at (n, c): the sum over m = 0..M-1 of
 * books[m, q_m, c % V], added in float32 in that order (the codec's order). `qualifiers` and `load`
 * are the target's (CUDA: `__device__ static`, a read through the read-only cache).
 */
export function additiveSum(r: ReaderIR, name: string, qualifiers: string, load: (pointer: string) => string): string | undefined {
  if (r.value.kind !== "additive") return undefined;
  const { books: M, entries: K, size: V } = r.value;
  return [
    `${qualifiers} float ${name}_sum(const uint8_t* codes, const float* books, int64_t n, int64_t c) {`,
    `  float v = 0.0f;`,
    `  for (int64_t m = 0; m < ${M}; m++) {`,
    `    const uint32_t q = qzo::read_bits(codes + ${r.codeByte}, ${r.codeBit}, ${r.bits});`,
    `    v += ${load(`books + (m * ${K} + (int64_t)q) * ${V} + c % ${V}`)};`,
    `  }`,
    `  return v;`,
    `}`,
  ].join("\n");
}

/** `NAME_table[n] = {...}` of a table format (prefix it with the target's qualifiers), or undefined. */
export function valueTable(r: ReaderIR, name: string): string | undefined {
  if (r.value.kind !== "table") return undefined;
  return `${name}_table[${r.value.values.length}] = {${r.value.values.map((v) => cFloat(v, `format '${r.format}': a value of its table`)).join(", ")}};`;
}
