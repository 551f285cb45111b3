/**
 * The one compile pipeline from a checked module to what every target generates code from: each
 * requested graph lowered to a kernel program and run through a pass pipeline once; the weight
 * slots and trainable tensors; the format readers the kernels need; and the ABI the generated
 * library will describe itself with. The artifact is target-neutral: the CPU and CUDA targets,
 * `qzoc compile --emit`, the backends and the benchmarks all read the same one.
 */
import { createHash } from "node:crypto";
import { RUN_SCALARS, UPDATE_SCALARS, type GraphAbi, type Manifest, type PointerArg } from "./abi.js";
import { weightSlots } from "./codegen/weight-slots.js";
import { readerOf, type ReaderIR } from "./codegen/readers.js";
import type { ModuleIR } from "./ir/ir.js";
import { moduleToJson } from "./ir/json.js";
import { configInts, formatOf, paramOf, paramShape } from "./ir/queries.js";
import { namesIn } from "./ir/int-expr.js";
import { trainableManifest, trainableSize } from "./ir/trainables.js";
import { kernelsOf, operandsOf, type KProgram } from "./kernels/kernel-ir.js";
import { lowerToKernels } from "./kernels/lower.js";
import { runPasses, type PipelineName } from "./kernels/passes/index.js";
import { QzoError } from "../util/errors.js";

export interface CompileOptions {
  /** The graphs to compile, in the order of the library's entry points. */
  graphs: readonly string[];
  /** The pass pipeline (default "fused"; "unfused" is the benchmarks' baseline). */
  pipeline?: PipelineName;
}

export interface Artifact {
  module: ModuleIR;
  pipeline: PipelineName;
  /** One kernel program per graph, after the pipeline. */
  programs: KProgram[];
  /** The reader of every quantized weight a kernel reads, by parameter name. */
  readers: Map<string, ReaderIR>;
  manifest: Omit<Manifest, "target">;
}

/** The graphs compiled by default: the spec's training loss and its forward graph, those it has. */
export function defaultGraphs(m: ModuleIR): string[] {
  return [m.train.loss, "forward"].filter((g, i, a) => g && a.indexOf(g) === i && m.graphs.some((x) => x.name === g));
}

export function compileArtifact(m: ModuleIR, opts: CompileOptions): Artifact {
  const pipeline = opts.pipeline ?? "fused";
  const programs = opts.graphs.map((g) => runPasses(lowerToKernels(m, g), pipeline));
  const weights = weightSlots(m);
  const trainables = trainableManifest(m).map((t) => {
    const part = t.field === "scale" ? "scales" : t.field === "min" ? "mins" : "data";
    const slot = weights.findIndex((s) => s.param === t.param && s.layer === t.layer && s.part === part);
    if (slot < 0) throw new QzoError(`${m.source}: trainable ${t.param}.${t.field} has no weight slot (is '${t.param}' stored as the trainable field needs?)`);
    return { ...t, size: trainableSize(m, t), slot };
  });
  const inputsHash = createHash("sha256").update(moduleToJson(m)).update(JSON.stringify({ graphs: opts.graphs, pipeline })).digest("hex");
  return {
    module: m,
    pipeline,
    programs,
    readers: readersOf(m, programs),
    manifest: {
      abi: 1,
      module: m.name,
      source: m.source,
      inputsHash,
      graphs: programs.map((p) => graphAbi(m, p, weights.length)),
      weights,
      trainables,
      update: { entry: "qzo_update", scalars: UPDATE_SCALARS },
    },
  };
}

/** The readers of the quantized parameters that kernels read. */
function readersOf(m: ModuleIR, programs: readonly KProgram[]): Map<string, ReaderIR> {
  const env = configInts(m);
  const readers = new Map<string, ReaderIR>();
  for (const k of programs.flatMap((p) => kernelsOf(p.steps))) {
    for (const { value } of operandsOf(k)) {
      if (!("param" in value) || readers.has(value.param.param)) continue;
      const p = paramOf(m, value.param.param);
      const f = formatOf(m, p);
      if (!f) continue;
      const [rows, cols] = paramShape(m, p, env) as [number, number];
      readers.set(p.name, readerOf(f, rows, cols));
    }
  }
  return readers;
}

/** The free dimension names of a program's inputs (those that are not config entries), sorted. */
export function freeDims(m: ModuleIR, p: KProgram): string[] {
  const ints = configInts(m);
  const names = p.inputs.flatMap((b) => p.buffers[b]!.shape.flatMap((d) => [...namesIn(d)]));
  return [...new Set(names.filter((n) => !ints.has(n)))].sort();
}

function graphAbi(m: ModuleIR, p: KProgram, nWeights: number): GraphAbi {
  const inputs = p.inputs.map((b) => p.buffers[b]!);
  const out = p.buffers[p.output]!;
  const dims = freeDims(m, p);
  const pointers: PointerArg[] = [...inputs.map((b) => ({ kind: "input" as const, name: b.name })), { kind: "output" }, { kind: "weights" }];
  const scalars = [...dims.map((d) => `dim:${d}` as const), ...RUN_SCALARS];
  return {
    name: p.graph,
    role: p.role,
    entry: `qzo_run_${p.graph}`,
    inputs: inputs.map((b) => ({ name: b.name, dtype: b.dtype, shape: b.shape })),
    output: { dtype: out.dtype, shape: out.shape },
    dims,
    pointers,
    scalars,
    nPtrs: inputs.length + 1 + nWeights,
    nScalars: scalars.length,
    peakBytes: p.peakBytes ?? "0",
  };
}
