/**
 * What the C-family targets (C++ for CPUs, CUDA) share when they turn one kernel program into an
 * entry function: names of dimensions and buffers as C expressions, where a parameter's weight slot
 * is, the loop nests, and the template views of the kernels whose code does not depend on the
 * target (norms, RoPE, attention, elementwise ops, positions, copies). A target adds what is its own
 * through `CTarget`: how a weight slot is addressed, and its kernel templates.
 */
import { UPDATE_SCALARS, type Manifest } from "../../abi.js";
import type { Artifact } from "../../pipeline.js";
import { freeDims } from "../../pipeline.js";
import type { ModuleIR } from "../../ir/ir.js";
import { configInts, formatOf, paramLayers, paramOf } from "../../ir/queries.js";
import { renameNames } from "../../ir/int-expr.js";
import type { KBuffer, KBuf, KKernel, KKernelOf, KOpName, KOperand, KParam, KProgram, KStep } from "../../kernels/kernel-ir.js";
import { distinctReaders, type ReaderIR } from "../readers.js";
import type { WeightSlot } from "../weight-slots.js";
import { UnsupportedError } from "../../../util/errors.js";
import { cCommentText, cDouble, cFloat, cIdentifier, cInt, cStringLiteral } from "./literal.js";

/** What differs between C-family targets inside an entry function. */
export interface CTarget {
  name: string;
  /** A weight slot's pointer, given its index as C. */
  slotRef(index: string): string;
  /** Renders one macro of the target's kernel templates. */
  render(macro: string, view: Record<string, unknown>): string;
}

export interface EntryContext {
  a: Artifact;
  m: ModuleIR;
  /** The module's int config values. */
  ints: ReadonlyMap<string, number>;
  p: KProgram;
  target: CTarget;
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
  /** A computed buffer's variable. */
  buf(a: KBuf): string;
  shapeOf(a: KOperand): string[];
  /** The product of all dimensions but the last. */
  lead(shape: string[]): string;
  lastDim(shape: string[]): string;
  /** The index of a parameter part among the weight slots, as C (layer index expressions included). */
  slotIndex(kp: KParam, part: WeightSlot["part"]): string | undefined;
  /** A parameter part's pointer as `const TYPE*`, a null one when the parameter has no such part (or no layers). */
  slotPtr(kp: KParam, part: WeightSlot["part"], type: string): string;
  /** A float parameter (norm weight, bias) or a computed vector, as a pointer expression. */
  vector(a: KOperand | undefined, what: string): string;
  /** The kernel's IR nodes, safe inside comments and C string literals. */
  comment(k: KKernel): string;
  fail(what: string): never;
}

export function entryContext(a: Artifact, p: KProgram, target: CTarget): EntryContext {
  const m = a.module;
  const ints = configInts(m);
  const slots = a.manifest.weights;
  const inputs = p.inputs.map((b) => p.buffers[b]!);
  const loopVars = new Set<string>();
  const collectLoops = (list: readonly KStep[]) => list.forEach((s) => s.kind === "loop" && (loopVars.add(s.var), collectLoops(s.body)));
  collectLoops(p.steps);
  const fail = (what: string): never => {
    throw new UnsupportedError(`${m.source}: graph '${p.graph}': ${what}`);
  };
  const dim = (d: string) => renameNames(d, (n) => (ints.has(n) ? `gen::cfg_${n}` : loopVars.has(n) ? `lv_${n}` : `dim_${n}`));
  const bufVar = (id: number) => `b${id}`;
  const ctx: EntryContext = {
    a,
    m,
    ints,
    p,
    target,
    inputs,
    free: freeDims(m, p),
    nIO: inputs.length + 1,
    dim,
    elems: (b) => (b.shape.length ? b.shape.map((d) => `(${dim(d)})`).join(" * ") : "1"),
    ctype: (b) => (b.dtype === "i32" ? "int32_t" : "float"),
    bufVar,
    buf: (o) => bufVar(o.buffer),
    shapeOf: (o) => ("buffer" in o ? p.buffers[o.buffer]!.shape : paramOf(m, o.param.param).type.shape),
    lead: (shape) => (shape.length > 1 ? shape.slice(0, -1).map((d) => `(${dim(d)})`).join(" * ") : "1"),
    lastDim: (shape) => dim(shape[shape.length - 1]!),
    slotIndex: (kp, part) => {
      const layers = paramLayers(paramOf(m, kp.param), ints);
      const base = slots.findIndex((s) => s.param === kp.param && s.layer === layers[0] && s.part === part);
      if (base < 0) return undefined;
      const stride = slots.filter((s) => s.param === kp.param && s.layer === layers[0]).length;
      return kp.index === undefined ? `${base}` : `${base} + ((${dim(kp.index)}) - ${layers[0] ?? 0}) * ${stride}`;
    },
    slotPtr: (kp, part, type) => {
      const i = ctx.slotIndex(kp, part);
      // No slot: the parameter has no such part, or no layers at all (a loop of zero iterations reads it).
      return i === undefined ? `((const ${type}*)nullptr)` : `((const ${type}*)${target.slotRef(i)})`;
    },
    vector: (o, what) => {
      if (o && "param" in o) {
        const param = paramOf(m, o.param.param);
        if (formatOf(m, param)) return fail(`${what} '${param.name}' is quantized; the ${target.name} code generator reads quantized parameters in matmul and embedding only`);
        return ctx.slotPtr(o.param, "data", "float");
      }
      if (!o) return fail(`${what} must be a computed value for the ${target.name} code generator`);
      return bufVar(o.buffer);
    },
    comment: (k) => cCommentText(k.from.join("; ")),
    fail,
  };
  return ctx;
}

/**
 * The program-level view both C-family templates render: provenance, config constants, the
 * readers, the embedded manifest and the update kernel's tables (each target adds its own).
 */
export function programView(a: Artifact, manifest: Manifest, reader: (r: ReaderIR) => string) {
  const m = a.module;
  const trainables = manifest.trainables;
  return {
    source: cCommentText(m.source),
    model: cCommentText(m.name),
    graphs: a.programs.map((p) => p.graph),
    hash: manifest.inputsHash,
    passes: a.programs[0]?.passes ?? [],
    dims: [...configInts(m)].map(([name, value]) => ({ name: `cfg_${name}`, value: cInt(value, `${m.source}: config entry '${name}'`) })),
    readers: distinctReaders(a.readers).map(reader),
    manifest: cStringLiteral(JSON.stringify(manifest)),
    update: {
      count: trainables.length,
      nScalars: UPDATE_SCALARS.length,
      sc: Object.fromEntries(UPDATE_SCALARS.map((n, i) => [n, i])),
      sizes: trainables.length ? trainables.map((t) => t.size) : [0],
      floored: trainables.length ? trainables.map((t) => (t.field === "scale" ? 1 : 0)) : [0],
    },
  };
}

/** A kernel's code: one per op; null where a target has no kernel for the op. */
export type Emitter<N extends KOpName, C extends EntryContext = EntryContext> = (k: KKernelOf<N>, c: C) => string;
export type Emitters<C extends EntryContext = EntryContext> = { [N in KOpName]: Emitter<N, C> | null };

/**
 * The layout ops as gathers: output element i reads one input element at an index computed from
 * i (C statements `defs`, then the expression `src`), so both C-family targets run them as one
 * elementwise loop (the `gather` macro); `guard` is a host-side condition that must hold.
 */
interface GatherView {
  E: string;
  ptrs: { type: string; name: string; expr: string }[];
  defs: string[];
  src: string;
  guard?: { cond: string; message: string };
}

function gather(k: KKernel, c: EntryContext, v: GatherView): string {
  return c.target.render("gather", { comment: c.comment(k), y: c.bufVar(k.out), ...v, guard: v.guard ? { cond: v.guard.cond, message: cStringLiteral(v.guard.message) } : undefined });
}

const i64 = (name: string, expr: string) => `const int64_t ${name} = ${expr};`;

const LAYOUT_EMITTERS = {
  chunk: (k, c) => {
    const xs = c.shapeOf(k.x);
    const W = c.lastDim(xs);
    return gather(k, c, {
      E: c.elems(c.p.buffers[k.out]!),
      ptrs: [{ type: "float", name: "x", expr: c.buf(k.x) }],
      defs: [i64("W", W), i64("D", `W / ${k.parts}`)],
      src: `x[(i / D) * W + ${k.index} * D + i % D]`,
    });
  },
  concat: (k, c) => {
    const inner = (s: readonly string[]) => s.slice(k.axis).map((d) => `(${c.dim(d)})`).join(" * ") || "1";
    return gather(k, c, {
      E: c.elems(c.p.buffers[k.out]!),
      ptrs: [{ type: "float", name: "a", expr: c.buf(k.a) }, { type: "float", name: "b", expr: c.buf(k.b) }],
      defs: [i64("ia", inner(c.shapeOf(k.a))), i64("ib", inner(c.shapeOf(k.b))), i64("o", "i / (ia + ib)"), i64("j", "i % (ia + ib)")],
      src: "j < ia ? a[o * ia + j] : b[o * ib + j - ia]",
    });
  },
  patchify: (k, c) => {
    const [, C, H, W] = c.shapeOf(k.x).map((d) => c.dim(d));
    return gather(k, c, {
      E: c.elems(c.p.buffers[k.out]!),
      ptrs: [{ type: "float", name: "x", expr: c.buf(k.x) }],
      defs: [
        i64("p", String(k.patch)), i64("C", C!), i64("H", H!), i64("W", W!), i64("K", "C * p * p"), i64("n", "(i / K) % ((H / p) * (W / p))"),
        i64("bb", "i / (K * (H / p) * (W / p))"), i64("kk", "i % K"), i64("ch", "kk / (p * p)"), i64("dy", "(kk / p) % p"), i64("dx", "kk % p"),
      ],
      src: `x[((bb * C + ch) * H + (n / (W / p)) * p + dy) * W + (n % (W / p)) * p + dx]`,
    });
  },
  unpatchify: (k, c) => {
    const [, , H, W] = c.shapeOf(k.like).map((d) => c.dim(d));
    const out = c.p.buffers[k.out]!.shape;
    return gather(k, c, {
      E: c.elems(c.p.buffers[k.out]!),
      ptrs: [{ type: "float", name: "y", expr: c.buf(k.y) }],
      defs: [
        i64("p", String(k.patch)), i64("C", c.dim(out[1]!)), i64("H", H!), i64("W", W!), i64("xx", "i % W"), i64("yy", "(i / W) % H"),
        i64("ch", "(i / (W * H)) % C"), i64("bb", "i / (W * H * C)"), i64("tok", "(yy / p) * (W / p) + xx / p"),
      ],
      src: "y[(bb * (H / p) * (W / p) + tok) * (p * p * C) + ((yy % p) * p + xx % p) * C + ch]",
    });
  },
  pos_crop: (k, c) => {
    const [, , H, W] = c.shapeOf(k.like).map((d) => c.dim(d));
    const D = c.lastDim(c.shapeOf(k.table));
    const h = `(${H}) / ${k.patch}`;
    const w = `(${W}) / ${k.patch}`;
    return gather(k, c, {
      E: c.elems(c.p.buffers[k.out]!),
      ptrs: [{ type: "float", name: "tab", expr: c.vector(k.table, "a position table") }],
      defs: [i64("M", String(k.grid)), i64("h", h), i64("w", w), i64("D", D), i64("tok", "i / D"), i64("top", "(M - h) / 2"), i64("left", "(M - w) / 2")],
      src: "tab[((top + tok / w) * M + left + tok % w) * D + i % D]",
      guard: { cond: `${h} > ${k.grid} || ${w} > ${k.grid}`, message: `pos_crop: the latents' patch grid is larger than the ${k.grid} x ${k.grid} position table` },
    });
  },
  timestep_embedding: (k, c) => {
    const comment = c.comment(k);
    const half = k.dim / 2;
    // diffusers' float32 steps: the exponent and the frequency rounded to float32, then t * f in float32.
    return gather(k, c, {
      E: c.elems(c.p.buffers[k.out]!),
      ptrs: [{ type: "float", name: "t", expr: c.buf(k.t) }],
      defs: [
        i64("half", String(half)), i64("kk", "i % (2 * half)"), i64("j", "kk % half"),
        `const float e = (${cFloat(Math.fround(-Math.log(k.maxPeriod)), `${comment}: max_period`)} * (float)j) / ${cFloat(Math.fround(half - k.shift), `${comment}: shift`)};`,
        "const float f = (float)exp((double)e);",
        "const double a = (double)(t[i / (2 * half)] * f);",
      ],
      src: `(kk < half) == ${k.flip ? "true" : "false"} ? cos(a) : sin(a)`,
    });
  },
} satisfies Partial<Emitters>;

/** The emitters whose template view is the same for every C-family target (each renders its own macro). */
export const C_EMITTERS = {
  rmsnorm: (k, c) => norm(k, c),
  layernorm: (k, c) => norm(k, c),
  rope: (k, c) => {
    const xs = c.shapeOf(k.x);
    const comment = c.comment(k);
    return c.target.render("rope", {
      comment, B: c.dim(xs[0]!), T: c.dim(xs[1]!), K: c.lastDim(xs), heads: cInt(k.heads, `${comment}: heads`), theta: cDouble(k.theta, `${comment}: theta`),
      style: k.style, x: c.buf(k.x), y: c.bufVar(k.out),
    });
  },
  attention: (k, c) => {
    const qs = c.shapeOf(k.q);
    const comment = c.comment(k);
    return c.target.render("attention", {
      comment, B: c.dim(qs[0]!), T: c.dim(qs[1]!), S: c.dim(c.shapeOf(k.k)[1]!), K: c.lastDim(qs), heads: cInt(k.heads, `${comment}: heads`), kvHeads: cInt(k.kvHeads, `${comment}: kv_heads`),
      causal: k.causal, q: c.buf(k.q), k: c.buf(k.k), v: c.buf(k.v), y: c.bufVar(k.out),
    });
  },
  unary: (k, c) => {
    const x = "(double)x[i]";
    const expr = k.fn === "neg" ? `-${x}` : `qzo::${k.fn}(${x})`;

    return c.target.render("unary", { comment: c.comment(k), E: c.elems(c.p.buffers[k.out]!), x: c.buf(k.x), y: c.bufVar(k.out), expr });
  },
  binary: (k, c) => {
    const comment = c.comment(k);
    const op = { add: "+", sub: "-", mul: "*", div: "/" }[k.fn];
    const out = c.p.buffers[k.out]!.shape;
    const side = (o: typeof k.a) => ("scalar" in o ? `(double)${cDouble(o.scalar, `${comment}: a constant`)}` : `(double)${c.buf(o)}[${broadcastIndex(c, c.shapeOf(o), out)}]`);
    return c.target.render("binary", { comment, E: c.elems(c.p.buffers[k.out]!), y: c.bufVar(k.out), expr: `${side(k.a)} ${op} ${side(k.b)}` });
  },
  positions: (k, c) => {
    const ts = c.shapeOf(k.tokens);
    const comment = c.comment(k);
    return c.target.render("positions", { comment, B: c.dim(ts[0]!), T: c.dim(ts[1]!), offset: cInt(k.offset, `${comment}: offset`), y: c.bufVar(k.out) });
  },
  copy: (k, c) => c.target.render("copy", { comment: c.comment(k), E: c.elems(c.p.buffers[k.out]!), x: c.buf(k.x), y: c.bufVar(k.out) }),
  ...LAYOUT_EMITTERS,
} satisfies Partial<Emitters>;

/**
 * A norm over groups of K values: the whole last dimension, or (rmsnorm with a shorter weight, as
 * per-head q/k norms) each run of len(w) values of it. A layernorm without affine parameters gets
 * null pointers for them.
 */
function norm(k: KKernelOf<"rmsnorm"> | KKernelOf<"layernorm">, c: EntryContext): string {
  const xs = c.shapeOf(k.x);
  const comment = c.comment(k);
  const group = k.op === "rmsnorm" ? c.dim(c.shapeOf(k.w)[0]!) : c.lastDim(xs);
  return c.target.render(k.op, {
    comment, M: `(${c.lead(xs)}) * ((${c.lastDim(xs)}) / (${group}))`, K: group, x: c.buf(k.x), w: k.w ? c.vector(k.w, "a norm weight") : "nullptr",
    bias: k.op === "layernorm" ? (k.b ? c.vector(k.b, "a norm bias") : "nullptr") : "", y: c.bufVar(k.out), eps: cDouble(k.eps, `${comment}: eps`),
  });
}

/**
 * The flat index into an operand of shape `shape` that broadcasts to `out` (NumPy's rule, shapes
 * aligned from the last dimension), for output element i: each output coordinate the operand has
 * (size not 1) times the operand's stride.
 */
function broadcastIndex(c: EntryContext, shape: readonly string[], out: readonly string[]): string {
  if (shape.length === out.length && shape.every((d, i) => d === out[i])) return "i";
  const pad = out.length - shape.length;
  const terms: string[] = [];
  for (let d = 0; d < out.length; d++) {
    const own = shape[d - pad];
    if (own === undefined || own === "1") continue;
    const after = out.slice(d + 1).map((x) => `(${c.dim(x)})`).join(" * ") || "1";
    const coord = d === 0 ? `(i / (${after}))` : `((i / (${after})) % (${c.dim(out[d]!)}))`;
    const stride = shape.slice(d - pad + 1).map((x) => `(${c.dim(x)})`).join(" * ") || "1";
    terms.push(`${coord} * ${stride}`);
  }
  return terms.length ? terms.join(" + ") : "0";
}



/** The kernels of a program that a target has no emitter for, as "op (IR nodes)". */
export function unsupportedKernels(p: KProgram, emitters: Emitters<never>): string[] {
  const out: string[] = [];
  const walk = (steps: readonly KStep[]) => steps.forEach((s) => (s.kind === "loop" ? walk(s.body) : emitters[s.op] === null && out.push(`${s.op} (${s.from.join("; ")})`)));
  walk(p.steps);
  return out;
}

/** Loop nests of a program as C: kernels by their emitters, carried values copied back by `copyBack`. */
export function loopNest<C extends EntryContext>(c: C, emitters: Emitters<C>, copyBack: (dst: string, src: string, elems: string) => string): string {
  const emit = (k: KKernel): string => {
    const e = emitters[k.op] as Emitter<typeof k.op, C> | null;
    if (!e) return c.fail(`the ${c.target.name} code generator has no kernel for '${k.op}' (${c.comment(k)})`);
    return e(k as never, c);
  };
  const steps = (list: readonly KStep[], ind: string): string =>
    list
      .map((s) => {
        if (s.kind === "kernel") return emit(s);
        const copies = s.carried
          .filter((x) => x.buffer !== x.yields)
          .map((x) => `${ind}  ${copyBack(c.bufVar(x.buffer), c.bufVar(x.yields), c.elems(c.p.buffers[x.buffer]!))}`)
          .join("\n");
        const v = `lv_${cIdentifier(s.var, "a loop variable")}`;
        return `${ind}for (int64_t ${v} = ${c.dim(s.start)}; ${v} < ${c.dim(s.end)}; ${v}++) {  // ${cCommentText(s.from)}\n${steps(s.body, ind + "  ")}\n${copies}\n${ind}}`;
      })
      .join("\n");
  return steps(c.p.steps, "  ");
}

/** Temporaries with planned slots, each slot's element type and size, for an entry's declarations. */
export function plannedTemps(c: EntryContext) {
  const temps = c.p.buffers.filter((b) => b.role === "temp" && b.slot !== undefined);
  const slots = [...new Set(temps.map((b) => b.slot!))].sort((x, y) => x - y).map((i) => {
    const b = temps.find((t) => t.slot === i)!;
    return { index: i, ctype: c.ctype(b), elems: c.elems(b) };
  });
  const views = temps.map((b) => ({ var: c.bufVar(b.id), ctype: c.ctype(b), slot: b.slot, name: cCommentText(b.name), type: `${b.dtype}[${b.shape.join(", ")}]` }));
  return { temps, slots, views };
}

/** The view of the scalars of an entry: each scalar's index by name (`sc.seed_lo`), and the free dimensions. */
export function scalarView(c: EntryContext) {
  const g = c.a.manifest.graphs.find((x) => x.name === c.p.graph)!;
  const sc = Object.fromEntries(g.scalars.map((n, i) => [n, i]));
  return { sc, free: c.free.map((name) => ({ name: `dim_${name}`, index: sc[`dim:${name}`]! })), nPtrs: g.nPtrs, nScalars: g.nScalars };
}
