/**
 * CPU code generation: kernel programs -> one C++17 source (OpenMP) rendered
 * from the nunjucks templates in templates/cpu/. Each kernel's code says
 * which IR nodes it implements. The generated library exports, per graph,
 * `qzo_run_<graph>(ptrs, scalars, n_ptrs, n_scalars)`, plus `qzo_update` (the
 * QZO step on the trainer's master copies), `qzo_manifest` (the JSON below)
 * and `qzo_last_error`.
 *
 * Calling convention of qzo_run_<graph>:
 *   ptrs    = graph inputs (in order), the output, then every weight slot (weightSlots(m))
 *   scalars = the graph's free dimensions (manifest order), then seed_lo, seed_hi,
 *             sign (0: no perturbation, +1, -1), eps, relative (0/1), rademacher (0/1), threads
 */
import { join } from "node:path";
import nunjucks from "nunjucks";
import type { ModuleIR } from "../ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { packageRoot } from "../../util/package-root.js";
import { lowerToKernels } from "../kernels/lower.js";
import type { KKernel, KParam, KProgram, KWeight } from "../kernels/kernel-ir.js";
import { runPasses } from "../kernels/passes/index.js";
import { trainableManifest, type TrainableEntry } from "../ir/trainables.js";
import { cCommentText, cIdentifier, cInt, cStringLiteral } from "./c-literal.js";
import { commonKernelView, entryContext, loopNest } from "./entry-context.js";
import { configInts, evalConcrete, formatOf, paramLayers, rowReader, weightSlots, type WeightSlot } from "./weights.js";

export interface CpuGraphManifest {
  name: string;
  role: "graph" | "loss";
  inputs: { name: string; dtype: string; shape: string[] }[];
  output: { shape: string[] };
  /** Names of the free dimensions, in the order of the first scalars. */
  dims: string[];
  nPtrs: number;
  nScalars: number;
  peakBytes: string;
}

export interface CpuManifest {
  module: string;
  source: string;
  graphs: CpuGraphManifest[];
  weights: WeightSlot[];
  trainables: (TrainableEntry & { size: number })[];
}

export interface CpuProgram {
  source: string;
  manifest: CpuManifest;
  programs: KProgram[];
}

const templatesDir = join(packageRoot(), "templates", "cpu");
const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(templatesDir), { autoescape: false, throwOnUndefined: true, trimBlocks: false });

export interface CpuOptions {
  /**
   * The unfused baseline for benchmarks: no fusion passes, and every matmul dequantizes its
   * whole weight to an f32 buffer before multiplying (the reference implementations' way).
   */
  unfused?: boolean;
}

export function generateCpu(m: ModuleIR, graphs: string[], opts: CpuOptions = {}): CpuProgram {
  const ints = configInts(m);
  const slots = weightSlots(m);
  const trainables = trainableManifest(m).map((t) => ({ ...t, size: trainableSize(m, t, ints) }));
  const readers = new Map<string, string>();
  const programs = graphs.map((g) => runPasses(lowerToKernels(m, g), opts.unfused ? "unfused" : "fused"));
  const entries = programs.map((p) => entryView(m, p, slots, trainables, readers, ints, Boolean(opts.unfused)));
  const manifest: CpuManifest = {
    module: m.name,
    source: m.source,
    graphs: entries.map((e) => e.manifest),
    weights: slots,
    trainables,
  };
  const source = env.render("program.cpp.njk", {
    source: cCommentText(m.source),
    model: cCommentText(m.name),
    graphs,
    hash: "%HASH%",
    passes: programs[0]?.passes ?? [],
    dims: [...ints].map(([name, value]) => ({ name: `cfg_${name}`, value: cInt(value, `${m.source}: config entry '${name}'`) })),
    readers: [...readers.values()],
    manifest: cStringLiteral(JSON.stringify(manifest)),
    entries: entries.map((e) => e.view),
    update: {
      count: trainables.length,
      sizes: trainables.length ? trainables.map((t) => t.size) : [0],
      floored: trainables.length ? trainables.map((t) => (t.field === "scale" ? 1 : 0)) : [0],
    },
  });
  return { source, manifest, programs };
}

function trainableSize(m: ModuleIR, t: TrainableEntry, ints: Map<string, number>): number {
  const p = m.params.find((x) => x.name === t.param)!;
  const shape = p.type.shape.map((d) => evalConcrete(d, ints));
  const f = formatOf(m, p);
  if (t.field === "weight") return shape.reduce((a, b) => a * b, 1);
  if (!f) throw new QzoError(`${m.source}: '${t.param}' is trained as ${t.field} but is not quantized`);
  const [rows, cols] = shape as [number, number];
  if (f.scale.per === "tensor") return 1;
  if (f.scale.per === "row") return rows;
  return f.block.axis === "in" ? rows * (cols / f.block.size) : (rows / f.block.size) * cols;
}

interface WeightView {
  reader: string;
  codes: string;
  scales: string;
  mins: string;
  zeros: string;
  data: string;
  cols: number;
  t: string;
  trainable: string;
  tMin: string;
  trainableMin: string;
}

function entryView(
  m: ModuleIR,
  p: KProgram,
  slots: WeightSlot[],
  trainables: (TrainableEntry & { size: number })[],
  readers: Map<string, string>,
  ints: Map<string, number>,
  unfused: boolean,
) {
  const c = entryContext(m, p, slots, ints, "CPU");
  const { inputs, free, nIO, dim, buf, shapeOf, lead, lastDim, elems, ctype, bufVar } = c;
  const slotRef = (index: string) => `ptrs[${nIO} + ${index}]`;
  const slotExpr = (kp: KParam, part: WeightSlot["part"]): string => {
    const i = c.slotIndex(kp, part);
    return i === undefined ? "nullptr" : slotRef(i);
  };
  const tExpr = (kp: KParam, field: "scale" | "min" | "weight"): { t: string; on: string } => {
    const param = m.params.find((x) => x.name === kp.param)!;
    const layers = paramLayers(param, ints);
    const first = trainables.find((t) => t.param === kp.param && t.field === field && t.layer === layers[0]);
    if (!first) return { t: "0", on: "false" };
    return { t: kp.index === undefined ? `${first.t}` : `${first.t} + (uint32_t)((${dim(kp.index)}) - ${layers[0] ?? 0})`, on: "true" };
  };
  const weight = (a: KWeight): WeightView => {
    const param = m.params.find((x) => x.name === a.param.param)!;
    const [rows, cols] = param.type.shape.map((d) => evalConcrete(d, ints)) as [number, number];
    const f = formatOf(m, param);
    if (trainables.some((t) => t.param === param.name && t.field === "weight")) {
      throw new QzoError(`${m.source}: the CPU code generator trains scales and mins, not the float weights of '${param.name}'`);
    }
    const sc = tExpr(a.param, "scale");
    const mn = tExpr(a.param, "min");
    if (!f) {
      return { reader: "", codes: "", scales: "", mins: "", zeros: "", data: `((const float*)${slotExpr(a.param, "data")})`, cols, t: "0", trainable: "false", tMin: "0", trainableMin: "false" };
    }
    const name = cIdentifier(`rd_${f.name}_${rows}x${cols}`, `${m.source}: the reader of parameter '${param.name}'`);
    if (!readers.has(name)) readers.set(name, rowReader(f, name, rows, cols));
    const ptr = (part: WeightSlot["part"], type: string) => {
      const e = slotExpr(a.param, part);
      return e === "nullptr" ? "nullptr" : `((const ${type}*)${e})`;
    };
    return {
      reader: `gen::${name}`,
      codes: ptr("codes", "uint8_t"),
      scales: ptr("scales", "float"),
      mins: ptr("mins", "float"),
      zeros: ptr("zeros", "float"),
      data: "",
      cols,
      t: sc.t,
      trainable: sc.on,
      tMin: mn.t,
      trainableMin: mn.on,
    };
  };

  const kernel = (k: KKernel): string => {
    const common = commonKernelView(c, p, k, slotRef);
    if (common) return renderMacro(common.macro, common.view);
    const comment = c.comment(k);
    const out = bufVar(k.out);
    switch (k.op) {
      case "matmul": {
        const xs = shapeOf(k.x);
        return renderMacro("matmul", {
          unfused, comment, M: lead(xs), K: lastDim(xs), N: dim(shapeOf(k.w)[0]!), x: buf(k.x, "linear's input"), y: out, w: weight(k.w),
          bias: k.bias ? c.vector(k.bias, "a bias", slotRef) : "", residual: k.residual ? buf(k.residual, "a residual") : "", act: k.act ?? "",
        });
      }
      case "matmul_glu": {
        const xs = shapeOf(k.x);
        return renderMacro("matmul_glu", { comment, M: lead(xs), K: lastDim(xs), N: dim(shapeOf(k.gate)[0]!), x: buf(k.x, "the input"), y: out, wGate: weight(k.gate), wUp: weight(k.up), act: k.act });
      }
      case "matmul_ce": {
        const xs = shapeOf(k.x);
        const ts = shapeOf(k.tokens);
        return renderMacro("matmul_ce", { comment, B: dim(ts[0]!), T: dim(ts[1]!), K: lastDim(xs), N: dim(shapeOf(k.w)[0]!), x: buf(k.x, "the input"), w: weight(k.w), tokens: buf(k.tokens, "tokens"), mask: buf(k.mask, "mask"), out });
      }
      case "matmul_distill_ce": {
        const xs = shapeOf(k.x);
        const is = shapeOf(k.ids);
        return renderMacro("matmul_distill_ce", { comment, B: dim(is[0]!), T: dim(is[1]!), Kt: dim(is[2]!), K: lastDim(xs), N: dim(shapeOf(k.w)[0]!), x: buf(k.x, "the input"), w: weight(k.w), ids: buf(k.ids, "teacher ids"), probs: buf(k.probs, "teacher probs"), mask: buf(k.mask, "mask"), out });
      }
      case "distill_ce": {
        const ls = shapeOf(k.logits);
        return renderMacro("distill_ce", { comment, B: dim(ls[0]!), T: dim(ls[1]!), N: lastDim(ls), Kt: lastDim(shapeOf(k.ids)), logits: buf(k.logits, "logits"), ids: buf(k.ids, "teacher ids"), probs: buf(k.probs, "teacher probs"), mask: buf(k.mask, "mask"), out });
      }
      case "next_token_ce": {
        const ls = shapeOf(k.logits);
        return renderMacro("next_token_ce", { comment, B: dim(ls[0]!), T: dim(ls[1]!), N: lastDim(ls), logits: buf(k.logits, "logits"), tokens: buf(k.tokens, "tokens"), mask: buf(k.mask, "mask"), out });
      }
      case "embedding": {
        const ts = shapeOf(k.table);
        const ids = shapeOf(k.ids);
        return renderMacro("embedding", { comment, M: ids.map((d) => `(${dim(d)})`).join(" * ") || "1", K: dim(ts[1]!), N: dim(ts[0]!), ids: buf(k.ids, "ids"), y: out, w: weight(k.table) });
      }
      default:
        return c.fail(`the CPU code generator has no kernel for '${k.op}' (${comment})`);
    }
  };

  const temps = p.buffers.filter((b) => b.role === "temp" && b.slot !== undefined);
  const slotList = [...new Set(temps.map((b) => b.slot!))].sort((x, y) => x - y).map((i) => {
    const b = temps.find((t) => t.slot === i)!;
    return { index: i, ctype: ctype(b), elems: elems(b) };
  });
  const io = [...inputs, p.buffers[p.output]!].map((b, index) => ({ var: bufVar(b.id), ctype: ctype(b), index }));
  const view = {
    graph: cIdentifier(p.graph, `${m.source}: graph`),
    role: p.role,
    steps: p.steps,
    peak: p.peakBytes ?? "0",
    nPtrs: nIO + slots.length,
    nScalars: free.length + 7,
    free: free.map((name, index) => ({ name: `dim_${name}`, index })),
    pBase: free.length,
    io,
    slots: slotList,
    temps: temps.map((b) => ({ var: bufVar(b.id), ctype: ctype(b), slot: b.slot, name: cCommentText(b.name), type: `${b.dtype}[${b.shape.join(", ")}]` })),
    body: loopNest(c, p, kernel, (dst, src, n) => `std::memcpy(${dst}, ${src}, sizeof(float) * (size_t)(${n}));`),
  };
  const manifest: CpuGraphManifest = {
    name: p.graph,
    role: p.role,
    inputs: inputs.map((b) => ({ name: b.name, dtype: b.dtype, shape: b.shape })),
    output: { shape: p.buffers[p.output]!.shape },
    dims: free,
    nPtrs: view.nPtrs,
    nScalars: view.nScalars,
    peakBytes: view.peak,
  };
  return { view, manifest };
}


/** Renders one macro of kernels.njk with its view. */
function renderMacro(name: string, view: Record<string, unknown>): string {
  return env.renderString(`{% import "kernels.njk" as K %}{{ K.${name}(k) }}`, { k: view });
}
