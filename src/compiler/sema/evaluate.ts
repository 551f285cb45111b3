/**
 * Evaluation of AST expressions at compile time: symbolically (shapes, layout
 * positions) or to numbers (config defaults, concrete format checks).
 * Unknown names and non-integer results become diagnostics.
 */
import type * as A from "../syntax/ast.js";
import { Sym } from "../ir/symbolic.js";
import type { DiagnosticBag } from "../diagnostics.js";

/** Thrown inside evaluation after its diagnostic is recorded; callers catch it. */
export class EvalFailed extends Error {}

/**
 * Resolves a name; `names` lists the names in scope, for "did you mean" hints; `concrete` gives
 * an expression's value with the config values of the check (undefined when it has other atoms).
 */
export type SymScope = ((name: string) => Sym | undefined) & { names?: () => Iterable<string>; concrete?: (s: Sym) => number | undefined };

/**
 * Symbolic evaluation; `/` is floor division everywhere. In sizes (`floor` false) a division is
 * kept exact, so that `dim / n_heads * n_heads` is `dim`, where it divides: symbolically, or for
 * a single-term dividend on the concrete config values; otherwise it is a floor-division atom.
 * `%` is for layout positions (`floor` true) only.
 */
export function evalSym(e: A.Expr, scope: SymScope, diags: DiagnosticBag, what = "a size", floor = false): Sym {
  switch (e.kind) {
    case "number":
      if (!e.isInt) return fail(diags, e, `${what} must be an integer, found ${e.text}`);
      return Sym.int(e.value);
    case "name": {
      const s = scope(e.name);
      if (!s) return fail(diags, e, `unknown name '${e.name}'`, scope.names ? suggest(e.name, scope.names()) : undefined);
      return s;
    }
    case "unary":
      return evalSym(e.operand, scope, diags, what, floor).scale(-1);
    case "binary": {
      const l = evalSym(e.left, scope, diags, what, floor);
      const r = evalSym(e.right, scope, diags, what, floor);
      if ((e.op === "/" || e.op === "%") && r.constant === 0) return fail(diags, e.right, "division by zero");
      switch (e.op) {
        case "+": return l.add(r);
        case "-": return l.sub(r);
        case "*": return l.mul(r);
        case "/": return floor ? l.floorDiv(r) : sizeDiv(l, r, scope.concrete);
        case "%":
          if (!floor) return fail(diags, e, `'%' is for layout positions, not ${what}`);
          return l.mod(r);
      }
      break;
    }
    default:
      break;
  }
  return fail(diags, e, `${what} must be an integer expression, found ${describeExpr(e)}`);
}

/** l / r in a size: exact where it provably divides (see evalSym), else floor division. */
function sizeDiv(l: Sym, r: Sym, concrete: SymScope["concrete"]): Sym {
  if (l.dividedExactlyBy(r)) return l.div(r);
  if (l.singleTerm && r.singleTerm && concrete) {
    const a = concrete(l);
    const b = concrete(r);
    if (a !== undefined && b !== undefined && b !== 0 && a % b === 0) return l.div(r);
  }
  return l.floorDiv(r);
}

export type NumScope = (name: string) => number | undefined;

/** Evaluates to a number; integer operands use integer (floor) division, as in shapes. */
export function evalNumber(e: A.Expr, scope: NumScope, diags: DiagnosticBag, what = "a value"): number {
  switch (e.kind) {
    case "number":
      return e.value;
    case "name": {
      const v = scope(e.name);
      if (v === undefined) return fail(diags, e, `unknown name '${e.name}'`);
      return v;
    }
    case "unary":
      return -evalNumber(e.operand, scope, diags, what);
    case "binary": {
      const l = evalNumber(e.left, scope, diags, what);
      const r = evalNumber(e.right, scope, diags, what);
      const ints = Number.isInteger(l) && Number.isInteger(r);
      if ((e.op === "/" || e.op === "%") && r === 0) return fail(diags, e.right, "division by zero");
      switch (e.op) {
        case "+": return l + r;
        case "-": return l - r;
        case "*": return l * r;
        case "/": return ints ? Math.floor(l / r) : l / r;
        case "%": return ints ? ((l % r) + r) % r : l % r;
      }
      break;
    }
    default:
      break;
  }
  return fail(diags, e, `${what} must be a number, found ${describeExpr(e)}`);
}

export function describeExpr(e: A.Expr): string {
  switch (e.kind) {
    case "string": return `the string "${e.value}"`;
    case "bool": return `'${e.value}'`;
    case "call": return `a call of '${e.callee.name}'`;
    case "list": return "a list";
    case "index": return "an indexed value";
    case "name": return `'${e.name}'`;
    case "number": return e.text;
    default: return "an expression";
  }
}

export function fail(diags: DiagnosticBag, node: A.Node, message: string, hint?: string): never {
  diags.error(node.span, message, hint);
  throw new EvalFailed(message);
}

/** Runs a check; an EvalFailed (already reported) yields undefined. */
export function attempt<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof EvalFailed) return undefined;
    throw e;
  }
}

/** "did you mean" hint for a misspelt name. */
export function suggest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  return best !== undefined && bestDist <= Math.max(1, Math.floor(name.length / 3)) ? `did you mean '${best}'?` : undefined;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}
