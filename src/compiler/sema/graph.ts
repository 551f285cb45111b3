/**
 * Graphs of a model checked and lowered to SSA (the typed IR's GraphIR): names bound to values,
 * calls of ops typed by their registry entries (ops.ts) and calls of other graphs inlined, `for`
 * loops kept as structured nodes whose body block takes the loop-carried values as arguments.
 * Errors are recorded in the model's diagnostics; a value whose definition failed is poisoned, so
 * its uses are not reported again.
 */
import type * as A from "../syntax/ast.js";
import type { DiagnosticBag } from "../diagnostics.js";
import { type AttrValue, type BlockIR, type GraphIR, type NodeIR, type TensorType, type ValueIR, isDType, isFloatDType } from "../ir/ir.js";
import { Sym } from "../ir/symbolic.js";
import type { ModelChecker } from "./check.js";
import { EvalFailed, type SymScope, attempt, describeExpr, evalNumber, evalSym, fail, suggest } from "./evaluate.js";
import { locOf } from "./loc.js";
import { BINARY_OPS, type CType, type InferCtx, OPS, type OpSpec } from "./ops.js";

/** Lowers one graph declaration of a model. */
export function lowerGraph(m: ModelChecker, g: A.GraphDecl): GraphIR {
  return new GraphLowering(m, g).lower();
}

function exprString(e: A.Node): string {
  return e.span.file.text.slice(e.span.start, e.span.end);
}

// ------------------------------------------------------------------ graphs

/** A name bound in a graph body: an SSA value, or a value whose definition failed. */
type Binding = number | "poisoned";

class GraphLowering {
  private values: ValueIR[] = [];
  private ctypes: CType[] = [];
  private freeDims = new Map<string, Sym>();
  private loopVars = new Set<string>();
  private inlining: string[] = [];

  constructor(
    private readonly m: ModelChecker,
    private readonly g: A.GraphDecl,
  ) {}

  private get diags(): DiagnosticBag {
    return this.m.diagnostics;
  }

  lower(): GraphIR {
    const g = this.g;
    this.reportUnknownCallees(g.body);
    this.inlining.push(g.name.name);
    const env = new Map<string, Binding>();
    const inputs: number[] = [];
    for (const inp of g.inputs) {
      if (env.has(inp.name.name)) {
        this.diags.error(inp.name.span, `input '${inp.name.name}' is declared twice`);
        continue;
      }
      const t = attempt(() => this.inputType(inp.type));
      const id = t ? this.newValue(t, inp.name.name) : "poisoned";
      env.set(inp.name.name, id);
      if (typeof id === "number") inputs.push(id);
    }
    const block: BlockIR = { args: [], nodes: [], yields: [] };
    const ret = this.lowerBody(g.body, env, block, true);
    if (ret === undefined) fail(this.diags, g.name, `${g.role} '${g.name.name}' has no 'return'`);
    if (ret === "poisoned") throw new EvalFailed("poisoned return");
    const rt = this.ctypes[ret]!;
    if (g.role === "loss" && !(rt.shape.length === 0 && rt.elem.kind === "dtype" && rt.elem.dtype === "f32")) {
      fail(this.diags, g.name, `loss '${g.name.name}' must return an f32 scalar, but returns ${this.typeText(rt)}`);
    }
    if (g.result) {
      const want = this.inputType(g.result);
      if (!this.sameType(want, rt)) fail(this.diags, g.result, `'${g.name.name}' declares result ${this.typeText(want)} but returns ${this.typeText(rt)}`);
    }
    return {
      name: g.name.name,
      role: g.role,
      inputs,
      outputs: [ret],
      values: this.values,
      body: block,
      loc: locOf(g.name),
    };
  }

  /** A graph input or result type: a plain dtype; unknown shape names become graph dimensions. */
  private inputType(t: A.TypeExpr): CType {
    const dt = t.base.name;
    if (!isDType(dt)) {
      return fail(this.diags, t.base, `graph values have a plain dtype (f32, i32...), found '${dt}'`);
    }
    if (t.fallback) fail(this.diags, t.fallback, "a fallback storage only applies to quantized parameters");
    const shape = t.shape.map((e) => {
      const scope = Object.assign((n: string) => {
        const c = this.m.configSym(n, e);
        if (c) return c;
        if (!this.freeDims.has(n)) this.freeDims.set(n, Sym.atom(n));
        return this.freeDims.get(n);
      }, { concrete: this.m.concrete });
      return evalSym(e, scope, this.diags, "a dimension");
    });
    return { elem: { kind: "dtype", dtype: dt }, shape };
  }

  private dimScope = (at: A.Node): SymScope =>
    Object.assign((n: string): Sym | undefined => this.m.configSym(n, at) ?? this.freeDims.get(n) ?? (this.loopVars.has(n) ? Sym.atom(n) : undefined), {
      names: () => [...(this.m.configScope(at).names?.() ?? []), ...this.freeDims.keys(), ...this.loopVars],
      concrete: this.m.concrete,
    });

  private sameType(a: CType, b: CType): boolean {
    const ea = a.elem.kind === "dtype" ? a.elem.dtype : a.elem.format;
    const eb = b.elem.kind === "dtype" ? b.elem.dtype : b.elem.format;
    return ea === eb && a.shape.length === b.shape.length && a.shape.every((d, i) => d.equals(b.shape[i]!));
  }

  private typeText(t: CType): string {
    const e = t.elem.kind === "dtype" ? t.elem.dtype : t.elem.format;
    return `${e}[${t.shape.map(this.m.show).join(", ")}]`;
  }

  private newValue(t: CType, name?: string): number {
    const id = this.values.length;
    const type: TensorType = { elem: t.elem, shape: t.shape.map(String) };
    this.values.push(name ? { id, type, name } : { id, type });
    this.ctypes.push(t);
    return id;
  }

  /** Lowers statements into `block`; returns the returned value (top level) or undefined. */
  private lowerBody(body: A.Stmt[], env: Map<string, Binding>, block: BlockIR, topLevel: boolean): Binding | undefined {
    let ret: Binding | undefined;
    body.forEach((s, i) => {
      if (ret !== undefined) {
        this.diags.error(s.span, "statement after 'return' is never reached");
        return;
      }
      if (s.kind === "assign") {
        const v = attempt(() => this.lowerExpr(s.value, env, block));
        if (typeof v === "number" && !this.values[v]!.name) this.values[v]!.name = s.target.name;
        env.set(s.target.name, v ?? "poisoned");
      } else if (s.kind === "for") {
        attempt(() => this.lowerFor(s, env, block));
      } else {
        if (!topLevel) {
          this.diags.error(s.span, "'return' must be the last statement of a graph, not inside a loop");
          return;
        }
        ret = attempt(() => this.lowerExpr(s.value, env, block)) ?? "poisoned";
        if (i !== body.length - 1) this.diags.error(body[i + 1]!.span, "statement after 'return' is never reached");
      }
    });
    return ret;
  }

  private lowerFor(s: A.ForStmt, env: Map<string, Binding>, block: BlockIR): void {
    const v = s.var.name;
    if (this.loopVars.has(v) || env.has(v)) fail(this.diags, s.var, `loop variable '${v}' shadows another name`);
    const from = evalSym(s.from, this.dimScope(s.from), this.diags, "a loop bound");
    const to = evalSym(s.to, this.dimScope(s.to), this.diags, "a loop bound");
    const carriedNames = [...assignedIn(s.body)].filter((n) => env.has(n));
    const inner = new Map(env);
    const body: BlockIR = { args: [], nodes: [], yields: [] };
    const inits: number[] = [];
    let poisoned = false;
    for (const n of carriedNames) {
      const outer = env.get(n)!;
      if (outer === "poisoned") {
        // Still check the body, so that its own errors are reported too.
        poisoned = true;
        inner.set(n, "poisoned");
        continue;
      }
      const arg = this.newValue(this.ctypes[outer]!, n);
      body.args.push(arg);
      inits.push(outer);
      inner.set(n, arg);
    }
    this.loopVars.add(v);
    this.lowerBody(s.body, inner, body, false);
    this.loopVars.delete(v);
    if (poisoned || carriedNames.some((n) => inner.get(n) === "poisoned")) {
      for (const n of carriedNames) env.set(n, "poisoned");
      return;
    }
    const outs: number[] = [];
    carriedNames.forEach((n, k) => {
      const next = inner.get(n) as number;
      const before = this.ctypes[inits[k]!]!;
      if (!this.sameType(before, this.ctypes[next]!)) {
        fail(this.diags, s.var, `'${n}' is ${this.typeText(before)} before the loop but ${this.typeText(this.ctypes[next]!)} at the end of its body`, "a value carried through a loop keeps its type");
      }
      body.yields.push(next);
      const out = this.newValue(before, n);
      outs.push(out);
      env.set(n, out);
    });
    block.nodes.push({
      op: "for",
      inputs: inits,
      outputs: outs,
      attrs: { var: v, from: from.toString(), to: to.toString() },
      body,
      loc: locOf(s),
    });
  }

  private emit(block: BlockIR, op: string, inputs: number[], attrs: Record<string, AttrValue>, t: CType, at: A.Node): number {
    const out = this.newValue(t);
    const node: NodeIR = { op, inputs, outputs: [out], attrs, loc: locOf(at) };
    block.nodes.push(node);
    return out;
  }

  private lowerExpr(e: A.Expr, env: Map<string, Binding>, block: BlockIR): number {
    switch (e.kind) {
      case "number":
        return this.emit(block, "const", [], { value: e.value }, { elem: { kind: "dtype", dtype: "f32" }, shape: [] }, e);
      case "name": {
        const b = env.get(e.name);
        if (b === "poisoned") throw new EvalFailed("poisoned");
        if (b !== undefined) return b;
        const p = this.m.param(e.name);
        if (p) {
          if (p.ir.array) fail(this.diags, e, `parameter '${e.name}' is one per '${p.ir.array.var}': index it, e.g. ${e.name}[${p.ir.array.var}]`);
          return this.emit(block, "param", [], { name: e.name }, p.ctype, e);
        }
        if (this.m.failedParams.has(e.name)) throw new EvalFailed("parameter with errors");
        const c = this.m.configValue(e.name);
        if (c !== undefined) return this.emit(block, "const", [], { value: c }, { elem: { kind: "dtype", dtype: "f32" }, shape: [] }, e);
        const names = [...env.keys(), ...this.m.paramNames()];
        return fail(this.diags, e, `unknown name '${e.name}'`, suggest(e.name, names));
      }
      case "index": {
        if (e.target.kind !== "name") fail(this.diags, e, "only parameter arrays can be indexed");
        const p = this.m.param(e.target.name);
        if (this.m.failedParams.has(e.target.name)) throw new EvalFailed("parameter with errors");
        if (!p) {
          if (env.has(e.target.name)) fail(this.diags, e, `'${e.target.name}' is a value, not a parameter array; only parameter arrays can be indexed`);
          fail(this.diags, e.target, `unknown parameter '${e.target.name}'`, suggest(e.target.name, this.m.paramNames()));
        }
        if (!p.ir.array) fail(this.diags, e, `parameter '${e.target.name}' is not an array and takes no index`);
        if (e.indices.length !== 1) fail(this.diags, e, `parameter '${e.target.name}' takes one index, found ${e.indices.length}`);
        const idx = evalSym(e.indices[0]!, this.dimScope(e.indices[0]!), this.diags, "an index");
        if (![...idx.atoms].some((a) => this.loopVars.has(a)) && idx.constant === undefined) {
          fail(this.diags, e.indices[0]!, "a parameter index must be a loop variable or a constant");
        }
        return this.emit(block, "param", [], { name: e.target.name, index: idx.toString() }, p.ctype, e);
      }
      case "unary": {
        const x = this.lowerExpr(e.operand, env, block);
        this.requireFloat(x, e.operand, "'-'");
        return this.emit(block, "neg", [x], {}, this.ctypes[x]!, e);
      }
      case "binary": {
        const l = this.lowerExpr(e.left, env, block);
        const r = this.lowerExpr(e.right, env, block);
        if (e.op === "%") fail(this.diags, e, "'%' is for sizes and layouts, not graph values");
        this.requireFloat(l, e.left, `'${e.op}'`);
        this.requireFloat(r, e.right, `'${e.op}'`);
        const lt = this.ctypes[l]!;
        const rt = this.ctypes[r]!;
        const shape = broadcastShape(lt.shape, rt.shape);
        if (!shape) {
          fail(
            this.diags, e,
            `'${e.op}' needs operands whose shapes broadcast (equal dimensions or 1, aligned from the last): ${this.typeText(lt)} and ${this.typeText(rt)}`,
          );
        }
        return this.emit(block, BINARY_OPS[e.op]!, [l, r], {}, { elem: lt.elem, shape }, e);
      }
      case "call":
        return this.lowerCall(e, env, block);
      default:
        return fail(this.diags, e, `${describeExpr(e)} is not a graph value`);
    }
  }

  private requireFloat(v: number, at: A.Node, what: string): void {
    const t = this.ctypes[v]!;
    if (t.elem.kind === "quant") {
      fail(this.diags, at, `${what} cannot take the quantized parameter (${t.elem.format}) directly`, "quantized parameters are used by linear() and embedding()");
    }
    if (!isFloatDType(t.elem.dtype)) fail(this.diags, at, `${what} needs a float value, found ${this.typeText(t)}`);
  }

  private lowerCall(e: A.CallExpr, env: Map<string, Binding>, block: BlockIR): number {
    const name = e.callee.name;
    const graph = this.m.graph(name);
    if (graph) return this.inlineGraph(graph, e, env, block);
    const spec = OPS[name];
    if (!spec) throw new EvalFailed("unknown operation, reported before lowering");
    return this.lowerOp(e, spec, env, block);
  }

  /**
   * Reports every call of an unknown operation up front, so that an error in an
   * argument (which stops the lowering of its expression) cannot hide it.
   */
  private reportUnknownCallees(body: A.Stmt[]): void {
    const visit = (e: A.Expr): void => {
      switch (e.kind) {
        case "call":
          if (!OPS[e.callee.name] && !this.m.graph(e.callee.name)) this.unknownOp(e);
          e.args.forEach(visit);
          e.named.forEach((a) => visit(a.value));
          return;
        case "binary":
          visit(e.left);
          visit(e.right);
          return;
        case "unary":
          visit(e.operand);
          return;
        case "index":
          visit(e.target);
          e.indices.forEach(visit);
          return;
        case "list":
          e.items.forEach(visit);
          return;
        default:
          return;
      }
    };
    for (const s of body) {
      if (s.kind === "for") this.reportUnknownCallees(s.body);
      else visit(s.value);
    }
  }

  private unknownOp(e: A.CallExpr): void {
    const name = e.callee.name;
    this.diags.error(e.callee.span, `unknown operation '${name}'`, suggest(name, [...Object.keys(OPS), ...this.m.graphNames()]) ?? `operations: ${Object.keys(OPS).join(", ")}`);
  }

  private lowerOp(e: A.CallExpr, spec: OpSpec, env: Map<string, Binding>, block: BlockIR): number {
    const name = e.callee.name;
    const min = spec.args.filter((a) => !a.optional).length;
    if (e.args.length < min || e.args.length > spec.args.length) {
      const want = min === spec.args.length ? `${min}` : `${min} to ${spec.args.length}`;
      fail(this.diags, e, `'${name}' takes ${want} argument${spec.args.length === 1 ? "" : "s"} (${spec.args.map((a) => a.name).join(", ")}), found ${e.args.length}`, spec.doc);
    }
    const args = e.args.map((a) => this.lowerExpr(a, env, block));
    args.forEach((v, i) => {
      const kind = spec.args[i]!.kind;
      const t = this.ctypes[v]!;
      if (kind === "weight") {
        const p = paramOf(block, v);
        if (p) {
          const ir = this.m.param(p)!.ir;
          if (!ir.uses.includes(name)) ir.uses.push(name);
        }
        if (t.elem.kind === "dtype" && !isFloatDType(t.elem.dtype)) fail(this.diags, e.args[i]!, `'${name}' needs a float or quantized ${spec.args[i]!.name}, found ${this.typeText(t)}`);
      } else if (kind === "float") {
        this.requireFloat(v, e.args[i]!, `'${name}' (argument ${spec.args[i]!.name})`);
      } else if (t.elem.kind !== "dtype" || isFloatDType(t.elem.dtype)) {
        fail(this.diags, e.args[i]!, `'${name}' needs integer ${spec.args[i]!.name}, found ${this.typeText(t)}`);
      }
    });
    const attrs = this.lowerAttrs(e, spec.attrs, name);
    const ctx: InferCtx = {
      fail: (message, arg) => fail(this.diags, arg === undefined ? e : e.args[arg] ?? e, `${name}: ${message}`),
      same: (a, b) => a.equals(b),
      divides: (a, b) => {
        const x = this.m.concrete(a);
        const y = this.m.concrete(b);
        return x === undefined || y === undefined || (y !== 0 && x % y === 0);
      },
      show: this.m.show,
      dim: (attr) => {
        const v = attrs.syms[attr];
        if (!v) return fail(this.diags, e, `${name}: attribute '${attr}' must be an integer size`);
        return v;
      },
      attrs: attrs.values,
    };
    const out = spec.infer(ctx, args.map((v) => this.ctypes[v]!));
    return this.emit(block, name, args, attrs.values, out, e);
  }

  private lowerAttrs(e: A.CallExpr, specs: Record<string, import("./ops.js").AttrSpec>, op: string): { values: Record<string, AttrValue>; syms: Record<string, Sym> } {
    const values: Record<string, AttrValue> = {};
    const syms: Record<string, Sym> = {};
    for (const a of e.named) {
      const spec = specs[a.name.name];
      if (!spec) {
        fail(this.diags, a.name, `'${op}' has no attribute '${a.name.name}'`, Object.keys(specs).length ? `attributes: ${Object.keys(specs).join(", ")}` : `'${op}' takes no attributes`);
      }
      if (a.name.name in values) fail(this.diags, a.name, `attribute '${a.name.name}' is given twice`);
      switch (spec.type) {
        case "int": {
          const s = evalSym(a.value, this.dimScope(a.value), this.diags, `attribute '${a.name.name}'`);
          syms[a.name.name] = s;
          values[a.name.name] = this.m.concrete(s) ?? s.toString();
          break;
        }
        case "float":
          values[a.name.name] = evalNumber(a.value, (n) => this.m.configValue(n), this.diags, `attribute '${a.name.name}'`);
          break;
        case "bool":
          if (a.value.kind !== "bool") fail(this.diags, a.value, `attribute '${a.name.name}' is true or false, found ${describeExpr(a.value)}`);
          values[a.name.name] = a.value.value;
          break;
        case "enum":
          if (a.value.kind !== "name" || !spec.values!.includes(a.value.name)) {
            fail(this.diags, a.value, `attribute '${a.name.name}' is one of ${spec.values!.join(", ")}, found ${describeExpr(a.value)}`);
          }
          values[a.name.name] = a.value.name;
          break;
      }
    }
    for (const [k, spec] of Object.entries(specs)) {
      if (k in values) continue;
      if (spec.default === undefined) fail(this.diags, e, `'${op}' needs the attribute '${k}'`, `e.g. ${op}(..., ${k} = ...)`);
      values[k] = spec.default;
      if (spec.type === "int") syms[k] = Sym.int(spec.default as number);
    }
    for (const [k, spec] of Object.entries(specs)) {
      const v = values[k];
      if (typeof v !== "number" || spec.min === undefined) continue;
      const ok = Number.isFinite(v) && (spec.minExclusive ? v > spec.min : v >= spec.min);
      if (!ok) {
        const at = e.named.find((a) => a.name.name === k)?.value ?? e;
        fail(this.diags, at, `attribute '${k}' of '${op}' is ${v}; it must be ${spec.minExclusive ? "greater than" : "at least"} ${spec.min}`);
      }
    }
    return { values, syms };
  }

  /**
   * A callee dimension such as `h * patch` with one name not bound yet: that name is bound to the
   * argument's dimension divided by the rest, when it divides exactly (`h` of `h * patch` from a
   * caller's `h * patch`).
   */
  private bindLinearDim(d: A.Expr, dim: Sym, bound: Map<string, Sym>): void {
    if (d.kind === "name") return;
    const unknown = [...new Set(namesOf(d))].filter((n) => !this.m.configSym(n, d) && !bound.has(n));
    if (unknown.length !== 1) return;
    const u = unknown[0]!;
    const scope = Object.assign((n: string) => this.m.configSym(n, d) ?? bound.get(n) ?? (n === u ? Sym.atom(u) : undefined), { concrete: this.m.concrete });
    const expr = evalSym(d, scope, this.diags, "a dimension");
    const atom = Sym.atom(u);
    if (!expr.dividedExactlyBy(atom)) return;
    const coef = expr.div(atom);
    if (coef.atoms.has(u) || !dim.dividedExactlyBy(coef)) return;
    bound.set(u, dim.div(coef));
  }

  private inlineGraph(graph: A.GraphDecl, e: A.CallExpr, env: Map<string, Binding>, block: BlockIR): number {
    if (this.inlining.includes(graph.name.name)) {
      fail(this.diags, e.callee, `'${graph.name.name}' calls itself`, "graphs are inlined, so a graph cannot call itself directly or through another graph");
    }
    if (graph.role === "loss") fail(this.diags, e.callee, `'${graph.name.name}' is a loss; only graphs can be called`);
    if (e.named.length) fail(this.diags, e.named[0]!.name, "graph calls take positional arguments only");
    if (e.args.length !== graph.inputs.length) {
      fail(this.diags, e, `'${graph.name.name}' takes ${graph.inputs.length} argument${graph.inputs.length === 1 ? "" : "s"}, found ${e.args.length}`);
    }
    const args = e.args.map((a) => this.lowerExpr(a, env, block));
    // Bind the callee's dimension names by matching its input shapes against the arguments.
    const saved = this.freeDims;
    const calleeDims = new Map<string, Sym>();
    const inner = new Map<string, Binding>();
    graph.inputs.forEach((inp, i) => {
      const got = this.ctypes[args[i]!]!;
      const want = inp.type;
      if (!isDType(want.base.name)) throw new EvalFailed("callee input type reported at the callee");
      if (want.shape.length !== got.shape.length || want.base.name !== (got.elem.kind === "dtype" ? got.elem.dtype : got.elem.format)) {
        fail(this.diags, e.args[i]!, `'${graph.name.name}' expects ${inp.name.name}: ${exprString(want)}, found ${this.typeText(got)}`);
      }
      want.shape.forEach((d, k) => {
        const dim = got.shape[k]!;
        if (d.kind === "name" && !this.m.configSym(d.name, d) && !calleeDims.has(d.name)) calleeDims.set(d.name, dim);
        this.bindLinearDim(d, dim, calleeDims);
        const scope = Object.assign((n: string) => this.m.configSym(n, d) ?? calleeDims.get(n), { concrete: this.m.concrete });
        const expect = evalSym(d, scope, this.diags, "a dimension");
        if (!expect.equals(dim)) fail(this.diags, e.args[i]!, `'${graph.name.name}' expects dimension ${k} of ${inp.name.name} to be ${this.m.show(expect)}, found ${this.m.show(dim)}`);
      });
      inner.set(inp.name.name, args[i]!);
    });
    this.freeDims = calleeDims;
    this.inlining.push(graph.name.name);
    try {
      const ret = this.lowerBody(graph.body, inner, block, true);
      // The callee's own errors are reported where it is defined, not again at each call.
      if (ret === undefined || ret === "poisoned") throw new EvalFailed("callee with errors");
      return ret;
    } finally {
      this.inlining.pop();
      this.freeDims = saved;
    }
  }
}

/** The names an expression mentions. */
function namesOf(e: A.Expr): string[] {
  switch (e.kind) {
    case "name":
      return [e.name];
    case "binary":
      return [...namesOf(e.left), ...namesOf(e.right)];
    case "unary":
      return namesOf(e.operand);
    default:
      return [];
  }
}

/**
 * The shape of an elementwise result: both shapes aligned from their last dimension, each pair
 * equal or one of them 1 (NumPy's rule); undefined when they do not broadcast.
 */
export function broadcastShape(a: readonly Sym[], b: readonly Sym[]): Sym[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: Sym[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i];
    const y = b[b.length - n + i];
    if (!x) out.push(y!);
    else if (!y) out.push(x);
    else if (x.constant === 1) out.push(y);
    else if (y.constant === 1 || x.equals(y)) out.push(x);
    else return undefined;
  }
  return out;
}

/** The parameter a value was loaded from, if it comes straight from a `param` node of this block. */
function paramOf(block: BlockIR, v: number): string | undefined {
  const n = block.nodes.find((x) => x.outputs[0] === v);
  return n?.op === "param" ? String(n.attrs["name"]) : undefined;
}

function assignedIn(body: A.Stmt[]): Set<string> {
  const out = new Set<string>();
  for (const s of body) {
    if (s.kind === "assign") out.add(s.target.name);
    if (s.kind === "for") for (const n of assignedIn(s.body)) out.add(n);
  }
  return out;
}

