/**
 * Questions every later stage asks of a checked module: its concrete int config values, the
 * concrete value of a canonical size, the layers of a parameter array, a parameter's format and
 * concrete shape, and how many scales a quantized matrix has.
 */
import { QzoError } from "../../util/errors.js";
import type { CodebookIR, FormatIR, ModuleIR, ParamIR } from "./ir.js";
import { evalIntExpr } from "./int-expr.js";

/** Config name -> int value. */
export function configInts(m: ModuleIR): Map<string, number> {
  const env = new Map<string, number>();
  for (const c of m.config) if (c.value.type === "int") env.set(c.name, c.value.value);
  return env;
}

/** One int config entry's value, when the spec has it. */
export function configInt(m: ModuleIR, name: string): number | undefined {
  const c = m.config.find((x) => x.name === name);
  return c?.value.type === "int" ? c.value.value : undefined;
}

/** The model's context length (config seq_len) when the spec has one; a QzoError when it is under 2 tokens. */
export function contextLength(m: ModuleIR): number | undefined {
  const ctx = configInt(m, "seq_len");
  if (ctx !== undefined && ctx < 2) throw new QzoError(`${m.source}: the model's context length (seq_len) is ${ctx}: expected at least 2 tokens`);
  return ctx;
}

/** The value of a canonical expression over config names. */
export function evalConcrete(expr: string, env: ReadonlyMap<string, number>): number {
  return evalIntExpr(expr, env);
}

/** The layers of a parameter array (from..to-1), or [undefined] for a plain parameter. */
export function paramLayers(p: ParamIR, env: ReadonlyMap<string, number>): (number | undefined)[] {
  if (!p.array) return [undefined];
  const from = evalConcrete(p.array.from, env);
  const to = evalConcrete(p.array.to, env);
  return Array.from({ length: to - from }, (_, k) => from + k);
}

export function formatOf(m: ModuleIR, p: ParamIR): FormatIR | undefined {
  return m.formats.find((f) => f.name === p.resolved);
}

export function paramOf(m: ModuleIR, name: string): ParamIR {
  const p = m.params.find((q) => q.name === name);
  if (!p) throw new Error(`internal: module ${m.name} has no parameter '${name}'`);
  return p;
}

/** A parameter's concrete shape. */
export function paramShape(m: ModuleIR, p: ParamIR, env: ReadonlyMap<string, number> = configInts(m)): number[] {
  return p.type.shape.map((d) => evalConcrete(d, env));
}

/** Number of scales of a [rows, cols] matrix in format f (scales, mins and zero-points alike). */
export function scaleCount(f: FormatIR, rows: number, cols: number): number {
  if (f.scale.per === "tensor") return 1;
  if (f.scale.per === "row") return rows;
  if (f.block.axis === "flat") return Math.ceil((rows * cols) / f.block.size);
  return f.block.axis === "in" ? rows * (cols / f.block.size) : (rows / f.block.size) * cols;
}

/** The format's additive codebook (AQLM: a code per table m, w = scale * sum_m book[m, q_m, c % V]), if it has one. */
export function additiveCodebook(f: FormatIR): CodebookIR | undefined {
  const cb = f.codebooks.find((b) => b.name === f.code.lookup);
  return cb?.additive ? cb : undefined;
}
