/**
 * What the C-family readers (CPU and CUDA) share: the expression of a code's value (its lookup
 * table entry, or the integer code sign-extended and offset) in terms of the code `q`, and the
 * initializer of a lookup table.
 */
import type { ReaderIR } from "../readers.js";
import { cFloat } from "./literal.js";

/** The value of code `q` as a float expression; `name` is the reader's C identifier. */
export function codeValue(r: ReaderIR, name: string): string {
  if (r.value.kind === "table") return `${name}_table[q]`;
  const signed = r.value.signed ? `qzo::sign_extend(q, ${r.bits})` : "(int32_t)q";
  return r.value.offset ? `(float)(${signed} - ${r.value.offset})` : `(float)${signed}`;
}

/** `NAME_table[n] = {...}` of a table format (prefix it with the target's qualifiers), or undefined. */
export function valueTable(r: ReaderIR, name: string): string | undefined {
  if (r.value.kind !== "table") return undefined;
  return `${name}_table[${r.value.values.length}] = {${r.value.values.map((v) => cFloat(v, `format '${r.format}': a value of its table`)).join(", ")}};`;
}
