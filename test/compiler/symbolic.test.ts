import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { DiagnosticBag } from "../../src/compiler/diagnostics.js";
import { evalIntExpr, floorDiv, floorMod } from "../../src/compiler/ir/int-expr.js";
import { Sym } from "../../src/compiler/ir/symbolic.js";
import { evalSym } from "../../src/compiler/sema/evaluate.js";
import type * as A from "../../src/compiler/syntax/ast.js";
import { rng } from "../support/random-model.js";

const a = (n: string) => Sym.atom(n);

describe("symbolic dimensions", () => {
  it("puts sums and products in one canonical form", () => {
    expect(a("dim").mul(a("n_kv_heads")).toString()).toBe(a("n_kv_heads").mul(a("dim")).toString());
    expect(a("x").add(a("y")).sub(a("x")).toString()).toBe("y");
    expect(a("B").mul(Sym.int(2)).add(a("B")).toString()).toBe("3*B");
    expect(Sym.int(7).sub(Sym.int(7)).toString()).toBe("0");
  });

  it("divides exactly where it provably divides, so head_dim * heads is dim again", () => {
    const headDim = a("dim").div(a("n_heads"));
    expect(headDim.toString()).toBe("dim/n_heads");
    expect(headDim.mul(a("n_heads")).equals(a("dim"))).toBe(true);
    expect(a("in").div(Sym.int(8)).toString()).toBe("in/8");
    expect(a("in").div(Sym.int(8)).mul(Sym.int(8)).toString()).toBe("in");
  });

  it("keeps floor division and remainder of layout indices opaque unless constant", () => {
    const i = a("i");
    expect(i.mod(Sym.int(16)).toString()).toBe("(i%16)");
    expect(i.floorDiv(Sym.int(16)).toString()).toBe("(i/16)");
    expect(Sym.int(37).floorDiv(Sym.int(16)).constant).toBe(2);
    expect(Sym.int(-3).mod(Sym.int(16)).constant).toBe(13);
    expect(i.mod(Sym.int(16)).scale(8).add(i.floorDiv(Sym.int(16)).scale(4)).add(Sym.int(16)).toString()).toBe("8*(i%16) + 4*(i/16) + 16");
  });

  it("substitutes values for atoms", () => {
    const e = a("n_kv_heads").mul(a("dim").div(a("n_heads")));
    const v = e.substitute((x) => Sym.int({ n_kv_heads: 4, dim: 64, n_heads: 8 }[x]!));
    expect(v.constant).toBe(32);
  });
});

// ------------------------------------------------------------------ against direct evaluation

/** A random integer expression over the atoms a, b, c: divisors are positive (constants or a, b, c + k). */
function randomExpr(rnd: () => number, depth: number, layout: boolean): A.Expr {
  const node = <T extends A.Expr>(e: Omit<T, "span">) => e as T;
  const leaf = (): A.Expr => {
    if (rnd() < 0.4) {
      const v = 1 + Math.floor(rnd() * 20);
      return node<A.NumberLit>({ kind: "number", value: v, text: String(v), isInt: true });
    }
    return node<A.NameRef>({ kind: "name", name: "abc"[Math.floor(rnd() * 3)]! });
  };
  const divisor = (): A.Expr => {
    const r = rnd();
    if (r < 0.5) return leaf();
    return node<A.BinaryExpr>({ kind: "binary", op: "+", left: node<A.NameRef>({ kind: "name", name: "abc"[Math.floor(rnd() * 3)]! }), right: leaf() });
  };
  if (depth === 0 || rnd() < 0.25) return leaf();
  const ops: A.BinaryOp[] = layout ? ["+", "-", "*", "/", "%"] : ["+", "-", "*", "/"];
  const op = ops[Math.floor(rnd() * ops.length)]!;
  const left = randomExpr(rnd, depth - 1, layout);
  const right = op === "/" || op === "%" ? divisor() : randomExpr(rnd, depth - 1, layout);
  if (rnd() < 0.1) return node<A.UnaryExpr>({ kind: "unary", op: "-", operand: node<A.BinaryExpr>({ kind: "binary", op, left, right }) });
  return node<A.BinaryExpr>({ kind: "binary", op, left, right });
}

/** The language's meaning, straight from the tree: `/` floor division, `%` the non-negative remainder. */
function direct(e: A.Expr, env: Record<string, number>): number {
  switch (e.kind) {
    case "number": return e.value;
    case "name": return env[e.name]!;
    case "unary": return -direct(e.operand, env);
    case "binary": {
      const l = direct(e.left, env);
      const r = direct(e.right, env);
      return { "+": l + r, "-": l - r, "*": l * r, "/": floorDiv(l, r), "%": floorMod(l, r) }[e.op];
    }
    default: throw new Error(`unexpected ${e.kind}`);
  }
}

describe("symbolic arithmetic follows the language exactly", () => {
  const scope = (env: Record<string, number> | undefined) =>
    Object.assign((n: string) => Sym.atom(n), env ? { concrete: (s: Sym) => evalIntExpr(s.toString(), env) } : {});

  it.each([
    ["sizes, with concrete config values", false, true],
    ["sizes of free dimensions", false, false],
    ["layout positions", true, false],
  ] as const)("simplified and then evaluated equals evaluated directly: %s (2000 random expressions)", (_what, layout, concrete) => {
    const rnd = rng(layout ? 17 : concrete ? 11 : 13);
    for (let i = 0; i < 2000; i++) {
      const e = randomExpr(rnd, 4, layout);
      const env = { a: 1 + Math.floor(rnd() * 300), b: 1 + Math.floor(rnd() * 64), c: 1 + Math.floor(rnd() * 9) };
      const sym = evalSym(e, scope(concrete ? env : undefined), new DiagnosticBag(), "a size", layout);
      const want = direct(e, env);
      expect(evalIntExpr(sym.toString(), env) + 0, `${sym.toString()} at ${JSON.stringify(env)}`).toBe(want + 0);
      // The same symbolic form must hold for any other values when it was derived without them.
      if (!concrete) {
        const other = { a: 1 + Math.floor(rnd() * 300), b: 1 + Math.floor(rnd() * 64), c: 1 + Math.floor(rnd() * 9) };
        expect(evalIntExpr(sym.toString(), other) + 0, `${sym.toString()} at ${JSON.stringify(other)}`).toBe(direct(e, other) + 0);
      }
    }
  });

  it("never distributes floor division over a sum: a ceil-packed GPTQ zero-point tensor keeps its size", () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-sym-"));
    const spec = join(dir, "ceil.qzo");
    writeFileSync(
      spec,
      [
        "format gptq_ceil {",
        "  code u4",
        "  block 128 along in",
        "  scale f16",
        "  zero u4 adjust 1",
        "  layout tensors {",
        '    code in "qweight" i32[in / 8, out] at [c / 8, r] bit 4 * (c % 8)',
        '    zero in "qzeros" i32[in / 128, (out + 7) / 8] at [b, r / 8] bit 4 * (r % 8)',
        '    scale in "scales" f16[in / 128, out] at [b, r]',
        "  }",
        "}",
        "model m {",
        "  config {",
        "    hidden: int = 172",
        "    words: int = (hidden + 15) / 16",
        "  }",
        "  param w: gptq_ceil[hidden, 256]",
        "  param v: f32[words, hidden]",
        "  graph forward(x: f32[B, 256]) -> f32[B, words] {",
        "    return linear(linear(x, w), v)",
        "  }",
        "}",
      ].join("\n"),
    );
    const r = checkFile(spec, {});
    expect(r.diagnostics).toEqual([]);
    const m = r.modules[0]!;
    const layout = m.formats[0]!.layout;
    const zero = layout.kind === "tensors" ? layout.fields.find((f) => f.field === "zero")! : undefined;
    expect(zero?.shape.map((d) => evalIntExpr(d, { in: 256, out: 172 }))).toEqual([2, 22]);
    expect(m.config.find((c) => c.name === "words")).toMatchObject({ value: { value: 11, expr: "(hidden + 15) / 16" }, expansion: "((hidden + 15)/16)" });
    expect(m.params.find((p) => p.name === "v")!.type.shape.map((d) => evalIntExpr(d, { hidden: 172 }))).toEqual([11, 172]);
  });

  it("evaluation errors name the expression: division or remainder by zero, unbound names", () => {
    expect(() => evalIntExpr("dim / (n - n)", { dim: 8, n: 2 })).toThrow(/^integer expression 'dim \/ \(n - n\)': division by zero$/);
    expect(() => evalIntExpr("dim % zero", { dim: 8, zero: 0 })).toThrow(/^integer expression 'dim % zero': remainder by zero$/);
    expect(() => evalIntExpr("a * b + c", { a: 1 })).toThrow(/^cannot evaluate the integer expression 'a \* b \+ c': unbound names b, c$/);
  });
});
