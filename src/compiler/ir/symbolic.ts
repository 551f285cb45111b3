/**
 * Symbolic integer expressions for shapes and layouts, in a canonical form so
 * that two expressions are equal exactly when their canonical strings are.
 *
 * An expression is a sum of terms; a term is a rational coefficient times a
 * product of atoms with integer exponents. `/` is floor division and `%` the
 * remainder (docs/LANGUAGE.md). A division is kept exact (`dim / n_heads *
 * n_heads` is `dim`) only where it provably divides: symbolically (`E*C / C`),
 * or, for a single-term dividend, on the concrete config values of the check
 * (evaluate.ts). Every other floor division and remainder is an opaque atom
 * such as `((out + 15)/16)` or `(i%16)`, never distributed over a sum. The
 * canonical string is valid C, and int-expr.ts evaluates it, with the same
 * value on non-negative operands.
 */

interface Term {
  num: number;
  den: number;
  /** atom -> exponent (never 0), in a Map sorted by atom when printed. */
  pow: Map<string, number>;
}

function gcd(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  while (b) [a, b] = [b, a % b];
  return a || 1;
}

function keyOf(pow: Map<string, number>): string {
  return [...pow.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([a, e]) => `${a}^${e}`)
    .join("*");
}

function degree(t: Term): number {
  let d = 0;
  for (const e of t.pow.values()) d += Math.abs(e);
  return d;
}

export class Sym {
  private constructor(private readonly terms: Term[]) {}

  static int(n: number): Sym {
    return new Sym([{ num: n, den: 1, pow: new Map() }]).normal();
  }

  static atom(name: string): Sym {
    return new Sym([{ num: 1, den: 1, pow: new Map([[name, 1]]) }]);
  }

  /** The value when the expression has no atoms and is an integer. */
  get constant(): number | undefined {
    if (this.terms.length === 0) return 0;
    const t = this.terms[0]!;
    if (this.terms.length === 1 && t.pow.size === 0 && t.den === 1) return t.num;
    return undefined;
  }

  get atoms(): Set<string> {
    return new Set(this.terms.flatMap((t) => [...t.pow.keys()]));
  }

  add(o: Sym): Sym {
    return new Sym([...this.terms, ...o.terms]).normal();
  }

  sub(o: Sym): Sym {
    return this.add(o.scale(-1));
  }

  scale(k: number, d = 1): Sym {
    return new Sym(this.terms.map((t) => ({ num: t.num * k, den: t.den * d, pow: t.pow }))).normal();
  }

  mul(o: Sym): Sym {
    const out: Term[] = [];
    for (const a of this.terms) {
      for (const b of o.terms) {
        const pow = new Map(a.pow);
        for (const [x, e] of b.pow) pow.set(x, (pow.get(x) ?? 0) + e);
        out.push({ num: a.num * b.num, den: a.den * b.den, pow });
      }
    }
    return new Sym(out).normal();
  }

  /** True for one term (a rational coefficient times a product of atoms). */
  get singleTerm(): boolean {
    return this.terms.length === 1;
  }

  /**
   * Exact division. Callers use it only where the division is known to be exact (see
   * `dividesExactly` and evaluate.ts); a multi-term divisor is never exact here.
   */
  div(o: Sym): Sym {
    if (o.terms.length !== 1) return this.floorDiv(o);
    const d = o.terms[0]!;
    const inv = new Map<string, number>();
    for (const [x, e] of d.pow) inv.set(x, -e);
    return this.mul(new Sym([{ num: d.den * Math.sign(d.num), den: Math.abs(d.num), pow: inv }]));
  }

  /**
   * True when `o` divides this for every value of the atoms: o is one term with an integer
   * coefficient and positive exponents, and every term of this has an integer coefficient that
   * o's divides and at least o's power of each of o's atoms (`E*C` by `C`, `4*a + 8*b` by `4`).
   */
  dividedExactlyBy(o: Sym): boolean {
    if (o.terms.length !== 1) return false;
    const d = o.terms[0]!;
    if (d.den !== 1 || d.num === 0 || [...d.pow.values()].some((e) => e < 0)) return false;
    return this.terms.every(
      (t) => t.den === 1 && t.num % d.num === 0 && [...d.pow].every(([x, e]) => (t.pow.get(x) ?? 0) >= e),
    );
  }

  /** Floor division: exact when provably so, folded for constants, else an opaque atom. */
  floorDiv(o: Sym): Sym {
    const a = this.constant;
    const b = o.constant;
    if (a !== undefined && b !== undefined && b !== 0) return Sym.int(Math.floor(a / b));
    if (b === 1) return this;
    if (this.dividedExactlyBy(o)) return this.div(o);
    return Sym.atom(`(${this.dividend()}/${o.divisor()})`);
  }

  mod(o: Sym): Sym {
    const a = this.constant;
    const b = o.constant;
    if (a !== undefined && b !== undefined && b !== 0) return Sym.int(((a % b) + b) % b);
    if (b === 1) return Sym.int(0);
    return Sym.atom(`(${this.dividend()}%${o.divisor()})`);
  }

  /** The canonical string as the left operand of / or %: parenthesized unless one positive product. */
  private dividend(): string {
    const t = this.terms;
    const single = t.length === 1 && t[0]!.num > 0 && t[0]!.den === 1;
    return single || t.length === 0 ? this.toString() : `(${this.toString()})`;
  }

  /** The canonical string as the right operand of / or %: parenthesized unless a name or a constant >= 0. */
  private divisor(): string {
    const t = this.terms;
    const c = this.constant;
    const atom = t.length === 1 && t[0]!.num === 1 && t[0]!.den === 1 && t[0]!.pow.size === 1 && [...t[0]!.pow.values()][0] === 1;
    return atom || (c !== undefined && c >= 0) ? this.toString() : `(${this.toString()})`;
  }

  equals(o: Sym): boolean {
    return this.toString() === o.toString();
  }

  /** Replaces atoms by expressions (used to evaluate with concrete config values). */
  substitute(f: (atom: string) => Sym | undefined): Sym {
    let out = Sym.int(0);
    for (const t of this.terms) {
      let p = Sym.int(t.num).scale(1, t.den);
      for (const [a, e] of t.pow) {
        const v = f(a) ?? Sym.atom(a);
        for (let k = 0; k < Math.abs(e); k++) p = e > 0 ? p.mul(v) : p.div(v);
      }
      out = out.add(p);
    }
    return out;
  }

  toString(): string {
    if (this.terms.length === 0) return "0";
    return this.terms
      .map((t, i) => {
        const body = termString(Math.abs(t.num), t.den, t.pow);
        if (i === 0) return t.num < 0 ? `-${body}` : body;
        return t.num < 0 ? ` - ${body}` : ` + ${body}`;
      })
      .join("");
  }

  private normal(): Sym {
    const byKey = new Map<string, Term>();
    for (const t of this.terms) {
      const pow = new Map([...t.pow].filter(([, e]) => e !== 0));
      const key = keyOf(pow);
      const prev = byKey.get(key);
      if (prev) {
        prev.num = prev.num * t.den + t.num * prev.den;
        prev.den = prev.den * t.den;
      } else {
        byKey.set(key, { num: t.num, den: t.den, pow });
      }
    }
    const terms = [...byKey.values()].filter((t) => t.num !== 0);
    for (const t of terms) {
      const g = gcd(t.num, t.den);
      t.num /= g;
      t.den /= g;
    }
    terms.sort((a, b) => degree(b) - degree(a) || (keyOf(a.pow) < keyOf(b.pow) ? -1 : keyOf(a.pow) > keyOf(b.pow) ? 1 : 0));
    return new Sym(terms);
  }
}

function termString(num: number, den: number, pow: Map<string, number>): string {
  const atoms = [...pow.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const up: string[] = [];
  const down: string[] = [];
  for (const [a, e] of atoms) for (let k = 0; k < Math.abs(e); k++) (e > 0 ? up : down).push(a);
  if (num !== 1 || up.length === 0) up.unshift(String(num));
  if (den !== 1) down.unshift(String(den));
  const top = up.join("*");
  if (down.length === 0) return top;
  return `${top}/${down.length === 1 ? down[0] : `(${down.join("*")})`}`;
}
