/**
 * Where each parameter's data is passed to generated code (the "weight
 * slots"), and the C++ that reads one row of a weight, dequantized and
 * perturbed, straight from its packed storage. The row reader is derived from
 * the format declaration alone: bit positions are the layout's canonical index
 * expressions, values follow the code clause (offset, lookup table,
 * zero-point), and scales come from an fp32 array (the trainer's master copy),
 * perturbed once per scale by the numerics contract.
 */
import type { FormatIR, ModuleIR, ParamIR } from "../ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { evalIntExpr } from "../ir/int-expr.js";
import { cExpr } from "./c-expr.js";
import { cCommentText, cFloat } from "./c-literal.js";

export interface WeightSlot {
  /** `wq[3].codes`, `norm.data` ... */
  name: string;
  param: string;
  layer?: number;
  part: "data" | "codes" | "scales" | "mins" | "zeros";
}

/** Concrete int config values. */
export function configInts(m: ModuleIR): Map<string, number> {
  const env = new Map<string, number>();
  for (const c of m.config) if (c.value.type === "int") env.set(c.name, c.value.value);
  return env;
}

/** The value of a canonical expression with concrete names (shapes divide exactly when valid). */
export function evalConcrete(expr: string, env: Map<string, number>): number {
  return evalIntExpr(expr, Object.fromEntries(env));
}

export function paramLayers(p: ParamIR, env: Map<string, number>): (number | undefined)[] {
  if (!p.array) return [undefined];
  const from = evalConcrete(p.array.from, env);
  const to = evalConcrete(p.array.to, env);
  return Array.from({ length: to - from }, (_, k) => from + k);
}

export function formatOf(m: ModuleIR, p: ParamIR): FormatIR | undefined {
  return m.formats.find((f) => f.name === p.resolved);
}

/** The slots of every parameter, in module order, each layer of an array in turn. */
export function weightSlots(m: ModuleIR): WeightSlot[] {
  const env = configInts(m);
  const slots: WeightSlot[] = [];
  for (const p of m.params) {
    const f = formatOf(m, p);
    for (const layer of paramLayers(p, env)) {
      const at = `${p.name}${layer === undefined ? "" : `[${layer}]`}`;
      const parts: WeightSlot["part"][] = f ? ["codes", "scales", ...(f.min ? ["mins" as const] : []), ...(f.zero ? ["zeros" as const] : [])] : ["data"];
      for (const part of parts) slots.push({ name: `${at}.${part}`, param: p.name, ...(layer === undefined ? {} : { layer }), part });
    }
  }
  return slots;
}

const WORD_BYTES: Record<string, number> = { i8: 1, u8: 1, i16: 2, i32: 4, i64: 8, f16: 2, bf16: 2, f32: 4 };

/**
 * C++ for `static inline void NAME(const uint8_t* codes, const float* scales, const float* mins,
 * const float* zeros, int64_t n, float* out, const Perturb& P, uint32_t t, bool trainable)`: row n of
 * a [rows, cols] matrix in format f, dequantized into out[cols].
 */
export function rowReader(f: FormatIR, name: string, rows: number, cols: number): string {
  if (f.codebooks.some((c) => c.additive)) {
    throw new QzoError(`format '${f.name}': additive codebooks are not supported by the CPU code generator yet`);
  }
  const bits = f.code.bits;
  const raw = `qzo::read_bits(${"%BASE%"}, ${"%BIT%"}, ${bits})`;
  const table = f.codebooks.find((c) => c.name === f.code.lookup);
  const value = (q: string) => {
    if (table) return `${name}_table[${q}]`;
    const signed = f.code.signed ? `qzo::sign_extend(${q}, ${bits})` : `(int32_t)${q}`;
    return f.code.offset ? `(float)(${signed} - ${f.code.offset})` : `(float)${signed}`;
  };
  const bs = f.block.size;
  const scaleIndex =
    f.scale.per === "tensor" ? "0" : f.scale.per === "row" ? "n" : f.block.axis === "in" ? `n * ${cols / bs} + c / ${bs}` : `(n / ${bs}) * ${cols} + c`;
  const lines: string[] = [];
  lines.push(`// format ${cCommentText(`${f.name}: ${f.formula}`)}`);
  if (table) lines.push(`static const float ${name}_table[${table.values!.length}] = {${table.values!.map((v) => cFloat(v, `format '${f.name}': a value of its table`)).join(", ")}};`);
  lines.push(
    `static inline void ${name}(const uint8_t* codes, const float* scales, const float* mins, const float* zeros, int64_t n, float* out, const qzo::Perturb& P, uint32_t t, bool trainable, uint32_t t_min, bool trainable_min) {`,
    `  (void)mins; (void)zeros; (void)t_min; (void)trainable_min;`,
  );
  let codeAt: string;
  if (f.layout.kind === "record") {
    const field = f.layout.fields.find((x) => x.field === "code")!;
    const rec = f.layout.bytes;
    const bit = cExpr(field.bitExpr, (v) => (v === field.index ? "i" : v));
    codeAt = raw.replace("%BASE%", `codes + (n * ${cols / bs} + c / ${bs}) * ${rec}`).replace("%BIT%", bit.replace(/\bi\b/g, `(c % ${bs})`));
  } else {
    const field = f.layout.fields.find((x) => x.field === "code")!;
    const dims = new Map([["in", cols], ["out", rows]]);
    const shape = field.shape.map((d) => evalConcrete(d, dims));
    const strides = shape.map((_, k) => shape.slice(k + 1).reduce((a, b) => a * b, 1));
    const vars = (v: string) => (v === "r" ? "n" : v === "c" ? "c" : v === "b" ? `(c / ${bs})` : v === "in" ? String(cols) : v === "out" ? String(rows) : v);
    const flat = field.at.map((e, k) => `(int64_t)(${cExpr(e, vars)}) * ${strides[k]}`).join(" + ");
    const word = WORD_BYTES[field.dtype]!;
    codeAt = raw.replace("%BASE%", `codes + (${flat}) * ${word}`).replace("%BIT%", field.bit ? cExpr(field.bit, vars) : "0");
  }
  lines.push(
    `  int64_t last_s = -1; float s = 0.0f; float mn = 0.0f; float zp = 0.0f;`,
    `  for (int64_t c = 0; c < ${cols}; c++) {`,
    `    const int64_t si = ${scaleIndex};`,
    `    if (si != last_s) {`,
    `      last_s = si;`,
    `      s = trainable ? qzo::perturbed(scales[si], P, t, (uint64_t)si) : scales[si];`,
    f.min ? `      mn = trainable_min ? qzo::perturbed(mins[si], P, t_min, (uint64_t)si) : mins[si];` : `      (void)mn;`,
    f.zero ? `      zp = zeros[si];` : `      (void)zp;`,
    `    }`,
    `    const uint32_t q = ${codeAt};`,
    `    const float v = ${value("q")}${f.zero ? " - zp" : ""};`,
    `    out[c] = ${f.min ? "(float)((double)s * (double)v + (double)mn)" : "s * v"};`,
    `  }`,
    `}`,
  );
  return lines.join("\n");
}
