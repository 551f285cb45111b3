/**
 * What the C++ and CUDA generators share when they turn one kernel program
 * into an entry function: the names of dimensions and buffers as C
 * expressions, where a parameter's weight slot is, and the template views of
 * the kernels whose code does not depend on the target (norms, RoPE,
 * attention, elementwise ops, positions, copies, embeddings' geometry).
 * Each generator adds what is its own: weight readers, matmul views, scratch.
 */
import type { ModuleIR } from "../ir/ir.js";
import { QzoError } from "../../util/errors.js";
import type { KBuffer, KKernel, KOperand, KParam, KProgram, KScalar, KStep } from "../kernels/kernel-ir.js";
import { cExpr } from "./c-expr.js";
import { cCommentText, cDouble, cInt } from "./c-literal.js";
import { formatOf, paramLayers, type WeightSlot } from "./weights.js";

export interface EntryContext {
  inputs: KBuffer[];
  /** The graph's free dimensions (B, T, ...), sorted: the first scalars of an entry. */
  free: string[];
  /** Graph inputs plus the output. */
  nIO: number;
  /** A canonical dimension as C: config constants gen::cfg_*, graph dimensions dim_*, loop variables lv_*. */
  dim(d: string): string;
  elems(b: KBuffer): string;
  ctype(b: KBuffer): string;
  bufVar(id: number): string;
  buf(a: KOperand | KScalar | undefined, what: string): string;
  shapeOf(a: KOperand): string[];
  /** The product of all dimensions but the last. */
  lead(shape: string[]): string;
  lastDim(shape: string[]): string;
  /** The index of a parameter part among the weight slots, as C (layer index expressions included). */
  slotIndex(kp: KParam, part: WeightSlot["part"]): string | undefined;
  /** A float parameter (norm weight, bias) or a computed vector, as a pointer expression. */
  vector(a: KOperand | undefined, what: string, slotRef: (index: string) => string): string;
  /** The kernel's IR nodes, safe inside comments and C string literals. */
  comment(k: KKernel): string;
  fail(what: string): never;
}

export function entryContext(m: ModuleIR, p: KProgram, slots: WeightSlot[], ints: Map<string, number>, target: string): EntryContext {
  const inputs = p.inputs.map((b) => p.buffers[b]!);
  const free = [...new Set(inputs.flatMap((b) => b.shape.flatMap((d) => d.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? [])).filter((n) => !ints.has(n)))].sort();
  const loopVars = new Set<string>();
  const collectLoops = (list: KStep[]) => list.forEach((s) => s.kind === "loop" && (loopVars.add(s.var), collectLoops(s.body)));
  collectLoops(p.steps);
  const fail = (what: string): never => {
    throw new QzoError(`${m.source}: graph '${p.graph}': ${what}`);
  };
  const dim = (d: string) => cExpr(d, (n) => (ints.has(n) ? `gen::cfg_${n}` : loopVars.has(n) ? `lv_${n}` : `dim_${n}`));
  const bufVar = (id: number) => `b${id}`;
  const ctx: EntryContext = {
    inputs,
    free,
    nIO: inputs.length + 1,
    dim,
    elems: (b) => (b.shape.length ? b.shape.map((d) => `(${dim(d)})`).join(" * ") : "1"),
    ctype: (b) => (b.dtype === "i32" ? "int32_t" : "float"),
    bufVar,
    buf: (a, what) => {
      if (!a || !("buffer" in a)) return fail(`${what} must be a computed value for the ${target} code generator`);
      return bufVar(a.buffer);
    },
    shapeOf: (a) => ("buffer" in a ? p.buffers[a.buffer]!.shape : m.params.find((x) => x.name === a.param.param)!.type.shape),
    lead: (shape) => (shape.length > 1 ? shape.slice(0, -1).map((d) => `(${dim(d)})`).join(" * ") : "1"),
    lastDim: (shape) => dim(shape[shape.length - 1]!),
    slotIndex: (kp, part) => {
      const param = m.params.find((x) => x.name === kp.param)!;
      const layers = paramLayers(param, ints);
      const base = slots.findIndex((s) => s.param === kp.param && s.layer === layers[0] && s.part === part);
      if (base < 0) return undefined;
      const stride = slots.filter((s) => s.param === kp.param && s.layer === layers[0]).length;
      return kp.index === undefined ? `${base}` : `${base} + ((${dim(kp.index)}) - ${layers[0] ?? 0}) * ${stride}`;
    },
    vector: (a, what, slotRef) => {
      if (a && "param" in a) {
        const param = m.params.find((x) => x.name === a.param.param)!;
        if (formatOf(m, param)) return fail(`${what} '${param.name}' is quantized; the ${target} code generator reads quantized parameters in matmul and embedding only`);
        return `((const float*)${slotRef(ctx.slotIndex(a.param, "data")!)})`;
      }
      return ctx.buf(a, what);
    },
    comment: (k) => cCommentText(k.from.join("; ")),
    fail,
  };
  return ctx;
}

/**
 * The template view of a kernel whose view is the same for every target, or undefined
 * (matmuls, losses and embeddings' weights are the generators' own).
 */
export function commonKernelView(
  c: EntryContext,
  p: KProgram,
  k: KKernel,
  slotRef: (index: string) => string,
): { macro: string; view: Record<string, unknown> } | undefined {
  const comment = c.comment(k);
  const out = c.bufVar(k.out);
  switch (k.op) {
    case "rmsnorm":
    case "layernorm": {
      const xs = c.shapeOf(k.x);
      const view = {
        comment, M: c.lead(xs), K: c.lastDim(xs), x: c.buf(k.x, "the input"), w: c.vector(k.w, "a norm weight", slotRef),
        bias: k.op === "layernorm" ? c.vector(k.b, "a norm bias", slotRef) : "", y: out, eps: cDouble(k.eps, `${comment}: eps`),
      };
      return { macro: k.op, view };
    }
    case "rope": {
      const xs = c.shapeOf(k.x);
      const view = { comment, B: c.dim(xs[0]!), T: c.dim(xs[1]!), K: c.lastDim(xs), heads: cInt(k.heads, `${comment}: heads`), theta: cDouble(k.theta, `${comment}: theta`), style: k.style, x: c.buf(k.x, "the input"), y: out };
      return { macro: "rope", view };
    }
    case "attention": {
      const qs = c.shapeOf(k.q);
      const view = {
        comment, B: c.dim(qs[0]!), T: c.dim(qs[1]!), K: c.lastDim(qs), heads: cInt(k.heads, `${comment}: heads`), kvHeads: cInt(k.kvHeads, `${comment}: kv_heads`),
        causal: k.causal, q: c.buf(k.q, "q"), k: c.buf(k.k, "k"), v: c.buf(k.v, "v"), y: out,
      };
      return { macro: "attention", view };
    }
    case "unary": {
      const x = "(double)x[i]";
      const expr = k.fn === "neg" ? `-${x}` : `qzo::${k.fn}(${x})`;
      return { macro: "unary", view: { comment, E: c.elems(p.buffers[k.out]!), x: c.buf(k.x, "the input"), y: out, expr } };
    }
    case "binary": {
      const op = { add: "+", sub: "-", mul: "*", div: "/" }[k.fn];
      const side = (o: typeof k.a) => ("scalar" in o ? `(double)${cDouble(o.scalar, `${comment}: a constant`)}` : `(double)${c.buf(o, "an operand")}[i]`);
      return { macro: "binary", view: { comment, E: c.elems(p.buffers[k.out]!), y: out, expr: `${side(k.a)} ${op} ${side(k.b)}` } };
    }
    case "positions": {
      const ts = c.shapeOf(k.tokens);
      return { macro: "positions", view: { comment, B: c.dim(ts[0]!), T: c.dim(ts[1]!), offset: cInt(k.offset, `${comment}: offset`), y: out } };
    }
    case "copy":
      return { macro: "copy", view: { comment, E: c.elems(p.buffers[k.out]!), x: c.buf(k.x, "the copied value"), y: out } };
    default:
      return undefined;
  }
}

/** Loop nests of a program as C: kernels by `kernel`, carried values copied back by `copyBack`. */
export function loopNest(c: EntryContext, p: KProgram, kernel: (k: KKernel) => string, copyBack: (dst: string, src: string, elems: string) => string): string {
  const steps = (list: KStep[], ind: string): string =>
    list
      .map((s) => {
        if (s.kind === "kernel") return kernel(s);
        const copies = s.carried
          .filter((x) => x.buffer !== x.yields)
          .map((x) => `${ind}  ${copyBack(c.bufVar(x.buffer), c.bufVar(x.yields), c.elems(p.buffers[x.buffer]!))}`)
          .join("\n");
        const v = `lv_${s.var}`;
        return `${ind}for (int64_t ${v} = ${c.dim(s.start)}; ${v} < ${c.dim(s.end)}; ${v}++) {  // ${cCommentText(s.from)}\n${steps(s.body, ind + "  ")}\n${copies}\n${ind}}`;
      })
      .join("\n");
  return steps(p.steps, "  ");
}
