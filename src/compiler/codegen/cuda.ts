/**
 * CUDA code generation: the SAME kernel programs, weight slots and trainable manifest as the
 * CPU generator (this module calls generateCpu for them, so the two can never disagree),
 * rendered with the nunjucks templates of templates/cuda/ into one .cu source for sm_80+.
 *
 * The generated library has the CPU library's C ABI: `qzo_run_<graph>(ptrs, scalars, n_ptrs,
 * n_scalars)` with HOST pointers (graph inputs, the output, every weight slot) and the same
 * scalars, `qzo_update` (on the device copies of the masters, copied back to the host arrays),
 * `qzo_manifest`, `qzo_last_error`; plus `qzo_cuda_status`, `qzo_cuda_init`, `qzo_sync_masters`,
 * `qzo_release`, `qzo_cuda_stats` and, per graph, `qzo_time_<graph>` (see docs/CUDA.md).
 *
 * A quantized weight is read by a generated reader struct whose code position, value and scale
 * index expressions are taken from the CPU row reader (codegen/weights.ts rowReader), i.e. from
 * the format declaration alone.
 */
import { join } from "node:path";
import nunjucks from "nunjucks";
import type { FormatIR, ModuleIR } from "../ir/ir.js";
import { QzoError } from "../../util/errors.js";
import { packageRoot } from "../../util/package-root.js";
import type { KKernel, KParam, KProgram, KWeight } from "../kernels/kernel-ir.js";
import { cExpr } from "./c-expr.js";
import { cCommentText, cIdentifier, cInt, cStringLiteral } from "./c-literal.js";
import { commonKernelView, entryContext, loopNest } from "./entry-context.js";
import { generateCpu, type CpuManifest } from "./cpu.js";
import { configInts, evalConcrete, formatOf, rowReader, weightSlots, type WeightSlot } from "./weights.js";

export interface CudaManifest extends CpuManifest {
  target: "cuda";
  /** Byte size of each weight slot (same order as `weights`): the host array the runtime passes. */
  weightBytes: number[];
}

export interface CudaProgram {
  source: string;
  manifest: CudaManifest;
  programs: KProgram[];
}

export interface CudaOptions {
  /** The unfused baseline for benchmarks: each matmul dequantizes its whole weight to 16 bits, then multiplies. */
  unfused?: boolean;
}

const templatesDir = join(packageRoot(), "templates", "cuda");
const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(templatesDir), { autoescape: false, throwOnUndefined: true, trimBlocks: false });

const WORD_BYTES: Record<string, number> = { i8: 1, u8: 1, i16: 2, i32: 4, i64: 8, f16: 2, bf16: 2, f32: 4 };

export function generateCuda(m: ModuleIR, graphs: string[], opts: CudaOptions = {}): CudaProgram {
  const unfused = Boolean(opts.unfused);
  // The CPU generator owns the kernel programs (lowerToKernels + runPasses), the manifest and the checks.
  const cpu = generateCpu(m, graphs, { unfused });
  const ints = configInts(m);
  const slots = weightSlots(m);
  const weightBytes = slots.map((s) => slotBytes(m, s, ints));
  const manifest: CudaManifest = { ...cpu.manifest, target: "cuda", weightBytes };
  const readers = new Map<string, string>();
  const entries = cpu.programs.map((p) => entryView(m, p, slots, readers, ints, unfused));
  const trainables = manifest.trainables;
  const slotOf = (t: (typeof trainables)[number]) => {
    const part = t.field === "scale" ? "scales" : t.field === "min" ? "mins" : "data";
    const i = slots.findIndex((s) => s.param === t.param && s.layer === t.layer && s.part === part);
    if (i < 0) throw new QzoError(`${m.source}: trainable ${t.param}.${t.field} has no weight slot`);
    return i;
  };
  const source = env.render("program.cu.njk", {
    source: cCommentText(m.source),
    model: cCommentText(m.name),
    graphs,
    unfused,
    hash: "%HASH%",
    passes: cpu.programs[0]?.passes ?? [],
    dims: [...ints].map(([name, value]) => ({ name: `cfg_${name}`, value: cInt(value, `${m.source}: config entry '${name}'`) })),
    readers: [...readers.values()],
    manifest: cStringLiteral(JSON.stringify(manifest)),
    slotBytes: weightBytes,
    entries: entries.map((e) => e.view),
    update: {
      count: trainables.length,
      slots: trainables.length ? trainables.map(slotOf) : [0],
      sizes: trainables.length ? trainables.map((t) => t.size) : [0],
      floored: trainables.length ? trainables.map((t) => (t.field === "scale" ? 1 : 0)) : [0],
    },
  });
  return { source, manifest, programs: cpu.programs };
}

/** Byte size of the host array the runtime passes for a weight slot (backends/cpu.ts weightArrays). */
function slotBytes(m: ModuleIR, s: WeightSlot, ints: Map<string, number>): number {
  const p = m.params.find((x) => x.name === s.param)!;
  const shape = p.type.shape.map((d) => evalConcrete(d, ints));
  const f = formatOf(m, p);
  if (s.part === "data" || !f) return 4 * shape.reduce((a, b) => a * b, 1);
  const [rows, cols] = shape as [number, number];
  if (s.part === "codes") {
    if (f.layout.kind === "record") return rows * (cols / f.block.size) * f.layout.bytes;
    const field = f.layout.fields.find((x) => x.field === "code")!;
    const dims = new Map([["in", cols], ["out", rows]]);
    return field.shape.map((d) => evalConcrete(d, dims)).reduce((a, b) => a * b, 1) * WORD_BYTES[field.dtype]!;
  }
  // scales, mins and zero-points: one fp32 value per scale
  const n = f.scale.per === "tensor" ? 1 : f.scale.per === "row" ? rows : f.block.axis === "in" ? rows * (cols / f.block.size) : (rows / f.block.size) * cols;
  return 4 * n;
}

/**
 * The device reader of a [rows, cols] weight in format f: the scale-index, code and value
 * expressions are lifted from the CPU row reader (one source of truth for the layout).
 */
function deviceReader(f: FormatIR, name: string, rows: number, cols: number): string {
  const cpu = rowReader(f, name, rows, cols);
  const grab = (re: RegExp, what: string) => {
    const x = re.exec(cpu);
    if (!x) throw new Error(`internal: cannot find the ${what} in the CPU row reader of format '${f.name}'`);
    return x[1]!;
  };
  const comment = grab(/^(\/\/ format .*)$/m, "comment");
  const table = /^static const float (\S+_table\[\d+\] = \{.*\};)$/m.exec(cpu)?.[1];
  const si = grab(/const int64_t si = (.*);$/m, "scale index");
  const q = grab(/const uint32_t q = (.*);$/m, "code read");
  const v = grab(/const float v = (.*);$/m, "value");
  const bs = f.block.size;
  const kb = f.scale.per === "tensor" || f.scale.per === "row" ? cols : f.block.axis === "in" ? bs : 0;
  const split = kb > 0 && kb % 16 === 0;
  const hasMin = Boolean(f.min);
  // Codes of adjacent output rows adjacent in memory (a code tensor indexed [..., r], as GPTQ's
  // qweight [in / 8, out]): the small-M kernel then gives each lane its own row.
  const codeField = f.layout.kind === "tensors" ? f.layout.fields.find((x) => x.field === "code") : undefined;
  const nMajor = codeField !== undefined && codeField.at[codeField.at.length - 1] === "r";
  return [
    comment,
    ...(table ? [`__device__ static const float ${table}`] : []),
    `struct ${name} {`,
    `  static constexpr int64_t ROWS = ${rows}, COLS = ${cols};`,
    `  static constexpr bool SPLIT = ${split}, HAS_MIN = ${hasMin};`,
    `  static constexpr int KB = ${split ? kb : 16};`,
    `  static constexpr bool NMAJOR = ${nMajor}, DIRECT16 = false;`,
    `  __device__ static __forceinline__ int64_t sidx(int64_t n, int64_t c) { (void)n; (void)c; return ${si}; }`,
    `  __device__ static __forceinline__ float value(const qzo::WArg& w, int64_t n, int64_t c) {`,
    `    const uint8_t* codes = w.codes; (void)codes;`,
    f.zero ? `    const float zp = __ldg(w.zeros + sidx(n, c));` : `    const float zp = 0.0f; (void)zp;`,
    `    const uint32_t q = ${q.replace(/qzo::read_bits/g, "qzo::read_bits")};`,
    `    return ${v};`,
    `  }`,
    `  __device__ static __forceinline__ float full(const qzo::WArg& w, int64_t n, int64_t c) {`,
    `    const int64_t si = sidx(n, c);`,
    `    const float s = __ldg(w.scales + si);`,
    `    const float v = value(w, n, c);`,
    hasMin ? `    return (float)((double)s * (double)v + (double)__ldg(w.mins + si));` : `    return s * v;`,
    `  }`,
    `};`,
  ].join("\n");
}

interface WeightView {
  R: string;
  codes: string;
  scales: string;
  mins: string;
  zeros: string;
}

function entryView(m: ModuleIR, p: KProgram, slots: WeightSlot[], readers: Map<string, string>, ints: Map<string, number>, unfused: boolean) {
  const c = entryContext(m, p, slots, ints, "CUDA");
  const { inputs, free, nIO, dim, buf, shapeOf, lead, lastDim, elems, ctype, bufVar } = c;
  // Workspace indices: planned slots first, then the graph's inputs and output, then kernel scratch.
  const temps = p.buffers.filter((b) => b.role === "temp" && b.slot !== undefined);
  const nPlanned = temps.length ? Math.max(...temps.map((b) => b.slot!)) + 1 : 0;
  let scratch = nPlanned + nIO;
  const takeScratch = (n: number) => {
    const s = scratch;
    scratch += n;
    return s;
  };

  /** W[...] of a parameter part in this call. */
  const slotRef = (index: string) => `W[${index}]`;
  const slotExpr = (kp: KParam, part: WeightSlot["part"]): string => {
    const idx = c.slotIndex(kp, part);
    return idx === undefined ? "nullptr" : slotRef(idx);
  };
  const weight = (a: KWeight): WeightView => {
    const param = m.params.find((x) => x.name === a.param.param)!;
    const [rows, cols] = param.type.shape.map((d) => evalConcrete(d, ints)) as [number, number];
    const f = formatOf(m, param);
    const ptr = (part: WeightSlot["part"], type: string) => {
      const e = slotExpr(a.param, part);
      return e === "nullptr" ? "nullptr" : `((const ${type}*)${e})`;
    };
    if (!f) return { R: `qzo::RdF32<${rows}, ${cols}>`, codes: ptr("data", "uint8_t"), scales: "nullptr", mins: "nullptr", zeros: "nullptr" };
    if (f.codebooks.some((c) => c.additive)) throw new QzoError(`format '${f.name}': additive codebooks are not supported by the CUDA code generator yet`);
    const name = cIdentifier(`rd_${f.name}_${rows}x${cols}`, `${m.source}: the reader of parameter '${param.name}'`);
    if (!readers.has(name)) readers.set(name, deviceReader(f, name, rows, cols));
    return { R: `gen::${name}`, codes: ptr("codes", "uint8_t"), scales: ptr("scales", "float"), mins: ptr("mins", "float"), zeros: ptr("zeros", "float") };
  };
  const actCode = (a: unknown) => ({ silu: 1, gelu: 2, relu: 3 })[String(a ?? "")] ?? 0;

  const kernel = (k: KKernel): string => {
    const common = commonKernelView(c, p, k, slotRef);
    if (common) return render(common.macro, common.view);
    const comment = c.comment(k);
    const out = bufVar(k.out);
    switch (k.op) {
      case "matmul": {
        const xs = shapeOf(k.x);
        return render("matmul", {
          unfused, comment, M: lead(xs), K: lastDim(xs), N: dim(shapeOf(k.w)[0]!), x: buf(k.x, "linear's input"), y: out, w: weight(k.w),
          bias: k.bias ? c.vector(k.bias, "a bias", slotRef) : "nullptr", hasBias: String(Boolean(k.bias)), residual: k.residual ? buf(k.residual, "a residual") : "nullptr", hasRes: String(Boolean(k.residual)),
          act: actCode(k.act), scratch: unfused ? takeScratch(1) : 0,
        });
      }
      case "matmul_glu": {
        const xs = shapeOf(k.x);
        return render("matmul_glu", { comment, M: lead(xs), K: lastDim(xs), x: buf(k.x, "the input"), y: out, wGate: weight(k.gate), wUp: weight(k.up), act: actCode(k.act) });
      }
      case "matmul_ce": {
        const xs = shapeOf(k.x);
        const ts = shapeOf(k.tokens);
        return render("matmul_ce", { comment, B: dim(ts[0]!), T: dim(ts[1]!), K: lastDim(xs), x: buf(k.x, "the input"), w: weight(k.w), tokens: buf(k.tokens, "tokens"), mask: buf(k.mask, "mask"), out, scratch: takeScratch(5) });
      }
      case "matmul_distill_ce": {
        const xs = shapeOf(k.x);
        const is = shapeOf(k.ids);
        return render("matmul_distill_ce", { comment, B: dim(is[0]!), T: dim(is[1]!), Kt: dim(is[2]!), K: lastDim(xs), x: buf(k.x, "the input"), w: weight(k.w), ids: buf(k.ids, "teacher ids"), probs: buf(k.probs, "teacher probs"), mask: buf(k.mask, "mask"), out, scratch: takeScratch(3) });
      }
      case "distill_ce": {
        const ls = shapeOf(k.logits);
        return render("distill_ce", { comment, B: dim(ls[0]!), T: dim(ls[1]!), N: lastDim(ls), Kt: lastDim(shapeOf(k.ids)), logits: buf(k.logits, "logits"), ids: buf(k.ids, "teacher ids"), probs: buf(k.probs, "teacher probs"), mask: buf(k.mask, "mask"), out, scratch: takeScratch(2) });
      }
      case "next_token_ce": {
        const ls = shapeOf(k.logits);
        return render("next_token_ce", { comment, B: dim(ls[0]!), T: dim(ls[1]!), N: lastDim(ls), logits: buf(k.logits, "logits"), tokens: buf(k.tokens, "tokens"), mask: buf(k.mask, "mask"), out, scratch: takeScratch(2) });
      }
      case "embedding": {
        const ts = shapeOf(k.table);
        const ids = shapeOf(k.ids);
        return render("embedding", { comment, M: ids.map((d) => `(${dim(d)})`).join(" * ") || "1", K: dim(ts[1]!), ids: buf(k.ids, "ids"), y: out, w: weight(k.table) });
      }
      default:
        return c.fail(`the CUDA code generator has no kernel for '${k.op}' (${comment})`);
    }
  };

  const slotList = [...new Set(temps.map((b) => b.slot!))].sort((x, y) => x - y).map((i) => {
    const b = temps.find((t) => t.slot === i)!;
    return { index: i, ctype: ctype(b), elems: elems(b) };
  });
  const outBuf = p.buffers[p.output]!;
  const io = [...inputs, outBuf].map((b, index) => ({ var: bufVar(b.id), ctype: ctype(b), index, name: cCommentText(b.name), elems: elems(b), ws: nPlanned + index, input: index < inputs.length }));
  const body = loopNest(c, p, kernel, (dst, src, n) => `QZO_CHECK(cudaMemcpyAsync(${dst}, ${src}, sizeof(float) * (size_t)(${n}), cudaMemcpyDeviceToDevice, st), "loop-carried copy");`);
  // The output's size from the scalars alone (outside graph_<name>, where no dim_* variables exist).
  const freeIndex = new Map(free.map((n, i) => [n, i] as const));
  const dimHost = (d: string) => cExpr(d, (n) => (ints.has(n) ? `gen::cfg_${n}` : freeIndex.has(n) ? `((int64_t)sc[${freeIndex.get(n)}])` : `dim_${n}`));
  const view = {
    graph: cIdentifier(p.graph, `${m.source}: graph`),
    role: p.role,
    steps: p.steps,
    peak: p.peakBytes ?? "0",
    nIO,
    nSlots: slots.length,
    nPtrs: nIO + slots.length,
    nScalars: free.length + 7,
    free: free.map((name, index) => ({ name: `dim_${name}`, index })),
    pBase: free.length,
    io,
    slots: slotList,
    temps: temps.map((b) => ({ var: bufVar(b.id), ctype: ctype(b), slot: b.slot, name: cCommentText(b.name), type: `${b.dtype}[${b.shape.join(", ")}]` })),
    outIndex: nIO - 1,
    outVar: bufVar(outBuf.id),
    outCtype: ctype(outBuf),
    outElems: elems(outBuf),
    outElemsHost: outBuf.shape.length ? outBuf.shape.map((d) => `(${dimHost(d)})`).join(" * ") : "1",
    outWs: nPlanned + nIO - 1,
    body,
  };
  return { view };
}


function render(name: string, view: Record<string, unknown>): string {
  return env.renderString(`{% import "kernels.njk" as K %}{{ K.${name}(k) }}`, { k: view });
}
