/**
 * Index expressions of format layouts, compiled once to JS closures.
 *
 * The checker prints every layout position as a canonical expression string
 * (src/compiler/ir/symbolic.ts): integers, names, `+ - * / %`, parentheses and
 * unary minus, e.g. `8*(i%16) + 4*(i/16) + 16` or `(c/8)`. `/` and `%` are
 * floor division and remainder (the same as C's on the non-negative operands
 * that layouts use); `*`, `/` and `%` bind tighter than `+` and `-` and all
 * group left to right.
 */
import { QzoError } from "../../util/errors.js";

/** A compiled expression: the values of the variables, in the order given to compileIndexExpr. */
export type IndexFn = (vars: ArrayLike<number>) => number;

type Tok = { kind: "num"; value: number } | { kind: "name"; name: string } | { kind: "op"; op: string };

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r") {
      i++;
    } else if (ch >= "0" && ch <= "9") {
      let j = i;
      while (j < src.length && src[j]! >= "0" && src[j]! <= "9") j++;
      out.push({ kind: "num", value: Number(src.slice(i, j)) });
      i = j;
    } else if (/[A-Za-z_]/.test(ch)) {
      let j = i;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j]!)) j++;
      out.push({ kind: "name", name: src.slice(i, j) });
      i = j;
    } else if ("+-*/%()".includes(ch)) {
      out.push({ kind: "op", op: ch });
      i++;
    } else {
      throw new QzoError(`index expression '${src}': unexpected character '${ch}' at position ${i}`);
    }
  }
  return out;
}

type Node =
  | { k: "num"; v: number }
  | { k: "var"; slot: number }
  | { k: "neg"; a: Node }
  | { k: "bin"; op: string; a: Node; b: Node };

const isOp = (t: Tok | undefined, op: string): boolean => t?.kind === "op" && t.op === op;

class Parser {
  private pos = 0;

  constructor(
    private readonly src: string,
    private readonly toks: Tok[],
    private readonly end: number,
    private readonly slots: ReadonlyMap<string, number>,
    start = 0,
  ) {
    this.pos = start;
  }

  private fail(msg: string): never {
    throw new QzoError(`index expression '${this.src}': ${msg}`);
  }

  parseAll(): Node {
    const n = this.sum();
    if (this.pos !== this.end) this.fail("unexpected trailing input");
    return n;
  }

  private sum(): Node {
    let a = this.product();
    while (this.pos < this.end && (isOp(this.toks[this.pos], "+") || isOp(this.toks[this.pos], "-"))) {
      const op = (this.toks[this.pos++] as { op: string }).op;
      a = { k: "bin", op, a, b: this.product() };
    }
    return a;
  }

  private product(): Node {
    let a = this.unary();
    while (this.pos < this.end && ["*", "/", "%"].some((o) => isOp(this.toks[this.pos], o))) {
      const op = (this.toks[this.pos++] as { op: string }).op;
      a = { k: "bin", op, a, b: this.unary() };
    }
    return a;
  }

  private unary(): Node {
    if (this.pos < this.end && isOp(this.toks[this.pos], "-")) {
      this.pos++;
      return { k: "neg", a: this.unary() };
    }
    if (this.pos < this.end && isOp(this.toks[this.pos], "+")) {
      this.pos++;
      return this.unary();
    }
    return this.primary();
  }

  private primary(): Node {
    if (this.pos >= this.end) this.fail("unexpected end of expression");
    const t = this.toks[this.pos]!;
    if (t.kind === "num") {
      this.pos++;
      return { k: "num", v: t.value };
    }
    if (t.kind === "name") {
      this.pos++;
      const slot = this.slots.get(t.name);
      if (slot === undefined) {
        const known = [...this.slots.keys()];
        this.fail(`unknown variable '${t.name}' (expected ${known.length ? known.map((k) => `'${k}'`).join(", ") : "no variables"})`);
      }
      return { k: "var", slot };
    }
    if (t.op !== "(") this.fail(`unexpected '${t.op}'`);
    const open = this.pos;
    let depth = 0;
    let close = -1;
    for (let j = open; j < this.end; j++) {
      if (isOp(this.toks[j], "(")) depth++;
      else if (isOp(this.toks[j], ")") && --depth === 0) {
        close = j;
        break;
      }
    }
    if (close < 0) this.fail("unbalanced parentheses");
    this.pos = close + 1;
    return new Parser(this.src, this.toks, close, this.slots, open + 1).parseAll();
  }
}

function build(n: Node, src: string): IndexFn {
  switch (n.k) {
    case "num": {
      const v = n.v;
      return () => v;
    }
    case "var": {
      const s = n.slot;
      return (x) => x[s]!;
    }
    case "neg": {
      const a = build(n.a, src);
      return (x) => -a(x);
    }
    case "bin": {
      const a = build(n.a, src);
      const b = build(n.b, src);
      switch (n.op) {
        case "+": return (x) => a(x) + b(x);
        case "-": return (x) => a(x) - b(x);
        case "*": return (x) => a(x) * b(x);
        case "/": return (x) => {
          const d = b(x);
          if (d === 0) throw new QzoError(`index expression '${src}': division by zero`);
          return Math.floor(a(x) / d);
        };
        default: return (x) => {
          const d = b(x);
          if (d === 0) throw new QzoError(`index expression '${src}': remainder by zero`);
          const r = a(x) % d;
          return r !== 0 && (r < 0) !== (d < 0) ? r + d : r;
        };
      }
    }
  }
}

/**
 * Compiles an index expression over the given variables; the closure takes their values in that
 * order. An unknown variable or a syntax error is a QzoError naming the expression.
 */
export function compileIndexExpr(src: string, vars: readonly string[]): IndexFn {
  const slots = new Map<string, number>();
  vars.forEach((v, k) => slots.set(v, k));
  const toks = tokenize(src);
  if (toks.length === 0) throw new QzoError(`index expression '${src}': empty expression`);
  return build(new Parser(src, toks, toks.length, slots).parseAll(), src);
}

/** Compiles and evaluates once (for shapes and other one-off uses). */
export function evalIndexExpr(src: string, env: Readonly<Record<string, number>>): number {
  const names = Object.keys(env);
  return compileIndexExpr(src, names)(names.map((n) => env[n]!));
}
