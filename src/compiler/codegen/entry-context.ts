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
import type { KArg, KBuffer, KKernel, KParam, KProgram, KStep } from "../kernels/kernel-ir.js";
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
  buf(a: KArg | undefined, what: string): string;
  shapeOf(a: KArg): string[];
  /** The product of all dimensions but the last. */
  lead(shape: string[]): string;
  lastDim(shape: string[]): string;
  /** The index of a parameter part among the weight slots, as C (layer index expressions included). */
  slotIndex(kp: KParam, part: WeightSlot["part"]): string | undefined;
  /** A float parameter (norm weight, bias) or a computed vector, as a pointer expression. */
  vector(a: KArg | undefined, what: string, slotRef: (index: string) => string): string;
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
  const out = c.bufVar(k.outputs[0]!);
  const a = k.args;
  switch (k.op) {
    case "rmsnorm":
    case "layernorm": {
      const xs = c.shapeOf(a[0]!);
      const view = {
        comment, M: c.lead(xs), K: c.lastDim(xs), x: c.buf(a[0], "the input"), w: c.vector(a[1], "a norm weight", slotRef),
        bias: k.op === "layernorm" ? c.vector(a[2], "a norm bias", slotRef) : "", y: out, eps: cDouble(Number(k.attrs["eps"]), `${comment}: eps`),
      };
      return { macro: k.op, view };
    }
    case "rope": {
      const xs = c.shapeOf(a[0]!);
      const view = { comment, B: c.dim(xs[0]!), T: c.dim(xs[1]!), K: c.lastDim(xs), heads: cInt(Number(k.attrs["heads"]), `${comment}: heads`), theta: cDouble(Number(k.attrs["theta"]), `${comment}: theta`), style: k.attrs["style"], x: c.buf(a[0], "the input"), y: out };
      return { macro: "rope", view };
    }
    case "attention": {
      const qs = c.shapeOf(a[0]!);
      const view = {
        comment, B: c.dim(qs[0]!), T: c.dim(qs[1]!), K: c.lastDim(qs), heads: cInt(Number(k.attrs["heads"]), `${comment}: heads`), kvHeads: cInt(Number(k.attrs["kv_heads"]), `${comment}: kv_heads`),
        causal: Boolean(k.attrs["causal"]), q: c.buf(a[0], "q"), k: c.buf(a[1], "k"), v: c.buf(a[2], "v"), y: out,
      };
      return { macro: "attention", view };
    }
    case "unary": {
      const fn = String(k.attrs["fn"]);
      const x = "(double)x[i]";
      const expr = fn === "neg" ? `-${x}` : `qzo::${fn}(${x})`;
      return { macro: "unary", view: { comment, E: c.elems(p.buffers[k.outputs[0]!]!), x: c.buf(a[0], "the input"), y: out, expr } };
    }
    case "binary": {
      const op = { add: "+", sub: "-", mul: "*", div: "/" }[String(k.attrs["fn"])]!;
      const sl = k.attrs["scalar_left"];
      const sr = k.attrs["scalar_right"];
      const left = sl !== undefined ? `(double)${cDouble(Number(sl), `${comment}: a constant`)}` : `(double)${c.buf(a[0], "an operand")}[i]`;
      const right = sr !== undefined ? `(double)${cDouble(Number(sr), `${comment}: a constant`)}` : `(double)${c.buf(a[sl !== undefined ? 0 : 1], "an operand")}[i]`;
      return { macro: "binary", view: { comment, E: c.elems(p.buffers[k.outputs[0]!]!), y: out, expr: `${left} ${op} ${right}` } };
    }
    case "positions": {
      const ts = c.shapeOf(a[0]!);
      return { macro: "positions", view: { comment, B: c.dim(ts[0]!), T: c.dim(ts[1]!), offset: cInt(Number(k.attrs["offset"]), `${comment}: offset`), y: out } };
    }
    case "copy":
      return { macro: "copy", view: { comment, E: c.elems(p.buffers[k.outputs[0]!]!), x: c.buf(a[0], "the copied value"), y: out } };
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
