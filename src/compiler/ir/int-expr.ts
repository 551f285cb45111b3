/**
 * Concrete evaluation of the IR's integer expressions: shape dimensions, loop bounds, parameter
 * indices, integer attributes and format layout positions, as printed by symbolic.ts. One grammar
 * and one meaning everywhere (docs/LANGUAGE.md): integers, names, `+ - * / %`, unary minus and
 * parentheses; `/` is floor division and `%` the non-negative remainder; `*`, `/` and `%` bind
 * tighter than `+` and `-`, and all group left to right. Generated C evaluates the same strings
 * with the same result on the non-negative operands that sizes and layouts use.
 */
import { QzoError } from "../../util/errors.js";

type Node =
  | { k: "num"; v: number }
  | { k: "name"; n: string }
  | { k: "neg"; a: Node }
  | { k: "bin"; op: "+" | "-" | "*" | "/" | "%"; a: Node; b: Node };

const cache = new Map<string, Node>();

function parse(text: string): Node {
  const hit = cache.get(text);
  if (hit) return hit;
  let pos = 0;
  const bad = (what: string): never => {
    throw new QzoError(`integer expression '${text}': ${what} at character ${pos + 1}`);
  };
  const skip = (): void => {
    while (pos < text.length && /\s/.test(text[pos]!)) pos++;
  };
  const primary = (): Node => {
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
    if (c === "-" || c === "+") {
      pos++;
      const a = primary();
      return c === "-" ? { k: "neg", a } : a;
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
  const product = (): Node => {
    let e = primary();
    for (;;) {
      skip();
      const c = text[pos];
      if (c !== "*" && c !== "/" && c !== "%") return e;
      pos++;
      e = { k: "bin", op: c, a: e, b: primary() };
    }
  };
  const sum = (): Node => {
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
  if (pos !== text.length) bad(`unexpected '${text[pos]}'`);
  cache.set(text, e);
  return e;
}

/** Floor division and the non-negative remainder, as the language defines them. */
export function floorDiv(a: number, b: number): number {
  return Math.floor(a / b);
}

export function floorMod(a: number, b: number): number {
  const r = a % b;
  return r !== 0 && r < 0 !== b < 0 ? r + b : r;
}

function evaluate(e: Node, get: (name: string) => number | undefined, text: string): number | undefined {
  switch (e.k) {
    case "num":
      return e.v;
    case "name":
      return get(e.n);
    case "neg": {
      const a = evaluate(e.a, get, text);
      return a === undefined ? undefined : -a;
    }
    case "bin": {
      const a = evaluate(e.a, get, text);
      const b = evaluate(e.b, get, text);
      if (a === undefined || b === undefined) return undefined;
      switch (e.op) {
        case "+":
          return a + b;
        case "-":
          return a - b;
        case "*":
          return a * b;
        default:
          if (b === 0) throw new QzoError(`integer expression '${text}': ${e.op === "/" ? "division" : "remainder"} by zero`);
          return e.op === "/" ? floorDiv(a, b) : floorMod(a, b);
      }
    }
  }
}

type Env = ReadonlyMap<string, number> | Readonly<Record<string, number>>;

const lookup = (env: Env) => (env instanceof Map ? (n: string) => env.get(n) : (n: string) => (env as Record<string, number>)[n]);

/** The value, or undefined when a name is unbound. */
export function tryEvalIntExpr(text: string, env: Env): number | undefined {
  return evaluate(parse(text), lookup(env), text);
}

/** The value of an expression whose names are all bound. */
export function evalIntExpr(text: string, env: Env): number {
  const v = tryEvalIntExpr(text, env);
  if (v === undefined) {
    const get = lookup(env);
    const missing = [...namesIn(text)].filter((n) => get(n) === undefined);
    throw new QzoError(`cannot evaluate the integer expression '${text}': unbound name${missing.length === 1 ? "" : "s"} ${missing.join(", ")}`);
  }
  return v;
}

/** A compiled expression: the values of the variables, in the order given to compileIntExpr. */
export type IntFn = (vars: ArrayLike<number>) => number;

/** Compiles an expression over the given variables; an unknown variable is an error naming it. */
export function compileIntExpr(text: string, vars: readonly string[]): IntFn {
  const build = (n: Node): IntFn => {
    switch (n.k) {
      case "num": {
        const v = n.v;
        return () => v;
      }
      case "name": {
        const slot = vars.indexOf(n.n);
        if (slot < 0) {
          throw new QzoError(`integer expression '${text}': unknown variable '${n.n}' (expected ${vars.length ? vars.map((v) => `'${v}'`).join(", ") : "no variables"})`);
        }
        return (x) => x[slot]!;
      }
      case "neg": {
        const a = build(n.a);
        return (x) => -a(x);
      }
      case "bin": {
        const a = build(n.a);
        const b = build(n.b);
        const what = n.op === "/" ? "division" : "remainder";
        const div = (x: ArrayLike<number>) => {
          const d = b(x);
          if (d === 0) throw new QzoError(`integer expression '${text}': ${what} by zero`);
          return d;
        };
        switch (n.op) {
          case "+": return (x) => a(x) + b(x);
          case "-": return (x) => a(x) - b(x);
          case "*": return (x) => a(x) * b(x);
          case "/": return (x) => floorDiv(a(x), div(x));
          default: return (x) => floorMod(a(x), div(x));
        }
      }
    }
  };
  return build(parse(text));
}

function collect(e: Node, out: Set<string>): void {
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

/** Replaces every whole-word name of an expression's text (numbers and operators stay as they are). */
export function renameNames(text: string, rename: (name: string) => string): string {
  return text.replace(/[A-Za-z_][A-Za-z0-9_]*/g, (n) => rename(n));
}

/** True when the expression is a single name (a plain dimension such as "B"). */
export function isPlainName(text: string): boolean {
  return parse(text).k === "name";
}

/**
 * Solves `text = target` for its single unbound name `x`, assuming the expression is affine in x
 * (as graph dimensions such as E*n_cand are). Returns undefined when no integer solution checks out.
 */
export function solveIntExpr(text: string, x: string, target: number, env: ReadonlyMap<string, number>): number | undefined {
  const at = (v: number): number | undefined => {
    const e = new Map(env);
    e.set(x, v);
    return tryEvalIntExpr(text, e);
  };
  const f0 = at(0);
  const f1 = at(1);
  if (f0 === undefined || f1 === undefined) return undefined;
  const slope = f1 - f0;
  if (slope === 0) return undefined;
  const v = Math.round((target - f0) / slope);
  return at(v) === target ? v : undefined;
}
