/**
 * Concrete evaluation of the IR's symbolic integer expressions (shape dimensions, loop bounds,
 * parameter indices, integer attributes), as written by src/compiler/ir/symbolic.ts: integers, names,
 * `+ - * /`, `%`, unary minus and parentheses.
 *
 * Evaluation is exact rational arithmetic in float64 (`/` is exact division, as for shapes); a result
 * that is not an integer is an error. Layout-only floor-division atoms such as `(i/16)` never appear in
 * shapes, bounds or indices, so they need no special case here.
 */
import { QzoError } from "../../util/errors.js";

type Expr =
  | { k: "num"; v: number }
  | { k: "name"; n: string }
  | { k: "neg"; a: Expr }
  | { k: "bin"; op: "+" | "-" | "*" | "/" | "%"; a: Expr; b: Expr };

const cache = new Map<string, Expr>();

function parse(text: string): Expr {
  const hit = cache.get(text);
  if (hit) return hit;
  let pos = 0;
  const bad = (what: string): never => {
    throw new QzoError(`cannot evaluate the size expression "${text}": ${what} at character ${pos + 1}`);
  };
  const skip = (): void => {
    while (pos < text.length && text[pos] === " ") pos++;
  };
  const primary = (): Expr => {
    skip();
    const c = text[pos];
    if (c === undefined) return bad("unexpected end");
    if (c === "(") {
      pos++;
      const e = sum();
      skip();
      if (text[pos] !== ")") bad("expected ')'");
      pos++;
      return e;
    }
    if (c === "-") {
      pos++;
      return { k: "neg", a: primary() };
    }
    const num = /^[0-9]+/.exec(text.slice(pos));
    if (num) {
      pos += num[0].length;
      return { k: "num", v: Number(num[0]) };
    }
    const id = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(pos));
    if (id) {
      pos += id[0].length;
      return { k: "name", n: id[0] };
    }
    return bad(`unexpected '${c}'`);
  };
  const product = (): Expr => {
    let e = primary();
    for (;;) {
      skip();
      const c = text[pos];
      if (c !== "*" && c !== "/" && c !== "%") return e;
      pos++;
      e = { k: "bin", op: c, a: e, b: primary() };
    }
  };
  const sum = (): Expr => {
    let e = product();
    for (;;) {
      skip();
      const c = text[pos];
      if (c !== "+" && c !== "-") return e;
      pos++;
      e = { k: "bin", op: c, a: e, b: product() };
    }
  };
  const e = sum();
  skip();
  if (pos !== text.length) bad("unexpected text");
  cache.set(text, e);
  return e;
}

function evalExpr(e: Expr, env: ReadonlyMap<string, number>): number | undefined {
  switch (e.k) {
    case "num":
      return e.v;
    case "name":
      return env.get(e.n);
    case "neg": {
      const a = evalExpr(e.a, env);
      return a === undefined ? undefined : -a;
    }
    case "bin": {
      const a = evalExpr(e.a, env);
      const b = evalExpr(e.b, env);
      if (a === undefined || b === undefined) return undefined;
      switch (e.op) {
        case "+":
          return a + b;
        case "-":
          return a - b;
        case "*":
          return a * b;
        case "/":
          return a / b;
        case "%":
          return ((a % b) + b) % b;
      }
    }
  }
}

function collect(e: Expr, out: Set<string>): void {
  if (e.k === "name") out.add(e.n);
  else if (e.k === "neg") collect(e.a, out);
  else if (e.k === "bin") {
    collect(e.a, out);
    collect(e.b, out);
  }
}

/** The names an expression mentions. */
export function namesIn(text: string): Set<string> {
  const out = new Set<string>();
  collect(parse(text), out);
  return out;
}

/** True when the expression is a single name (a plain dimension such as "B"). */
export function isPlainName(text: string): boolean {
  return parse(text).k === "name";
}

/** The value of an expression, or undefined when a name is unbound. Throws if it is not an integer. */
export function tryEvalDim(text: string, env: ReadonlyMap<string, number>): number | undefined {
  const v = evalExpr(parse(text), env);
  if (v === undefined) return undefined;
  const r = Math.round(v);
  if (!Number.isFinite(v) || Math.abs(v - r) > 1e-9 * Math.max(1, Math.abs(v))) {
    throw new QzoError(`the size expression "${text}" evaluates to ${v}, which is not an integer`);
  }
  return r;
}

/** The value of an expression whose names are all bound. */
export function evalDim(text: string, env: ReadonlyMap<string, number>): number {
  const v = tryEvalDim(text, env);
  if (v === undefined) {
    const missing = [...namesIn(text)].filter((n) => !env.has(n));
    throw new QzoError(`cannot evaluate the size expression "${text}": unbound name${missing.length === 1 ? "" : "s"} ${missing.join(", ")}`);
  }
  return v;
}

/**
 * Solves `text = target` for its single unbound name `x`, assuming the expression is affine in x
 * (as graph dimensions such as E*n_cand are). Returns undefined when there is no integer solution
 * that checks out.
 */
export function solveDim(text: string, x: string, target: number, env: ReadonlyMap<string, number>): number | undefined {
  const at = (v: number): number | undefined => {
    const e = new Map(env);
    e.set(x, v);
    return evalExpr(parse(text), e);
  };
  const f0 = at(0);
  const f1 = at(1);
  if (f0 === undefined || f1 === undefined || !Number.isFinite(f0) || !Number.isFinite(f1)) return undefined;
  const slope = f1 - f0;
  if (slope === 0) return undefined;
  const v = Math.round((target - f0) / slope);
  return at(v) === target ? v : undefined;
}
