/**
 * The CUDA target: the artifact's kernel programs as one .cu program for sm_80+ rendered from
 * templates/cuda/, including the runtime headers of templates/cuda/include/qzo/, and built with
 * nvcc into a fat library (build/build-cuda.ts).
 *
 * The library has the ABI of src/compiler/abi.ts with HOST pointers (`qzo_run_<graph>`,
 * `qzo_update` on the device copies of the masters, copied back to the host arrays, `qzo_manifest`,
 * `qzo_last_error`), plus `qzo_cuda_status`, `qzo_cuda_init`, `qzo_sync_masters`, `qzo_release`,
 * `qzo_cuda_stats` and, per graph, `qzo_time_<graph>` (docs/CUDA.md).
 */
import { buildCudaLibrary } from "../../build/build-cuda.js";
import type { Artifact } from "../../pipeline.js";
import { renameNames } from "../../ir/int-expr.js";
import { entryContext, loopNest, plannedTemps, programView, scalarView, unsupportedKernels, type CTarget } from "../c/entry.js";
import { cCommentText, cIdentifier } from "../c/literal.js";
import { templatesOf } from "../c/templates.js";
import type { GeneratedCode, Target } from "../target.js";
import { CUDA_EMITTERS, type CudaContext } from "./emitters.js";
import { cudaReader } from "./reader.js";

const templates = templatesOf("cuda");

/** The view of one graph's entry points. */
function entryView(a: Artifact, p: Artifact["programs"][number]) {
  const target: CTarget = { name: "CUDA", slotRef: (i) => `W[${i}]`, render: templates.macro };
  const base = entryContext(a, p, target);
  // Workspace indices: planned slots first, then the graph's inputs and output, then kernel scratch.
  const { temps, slots, views } = plannedTemps(base);
  const nPlanned = temps.length ? Math.max(...temps.map((b) => b.slot!)) + 1 : 0;
  let scratch = nPlanned + base.nIO;
  const c: CudaContext = {
    ...base,
    unfused: a.pipeline === "unfused",
    takeScratch: (n) => {
      const s = scratch;
      scratch += n;
      return s;
    },
  };
  const outBuf = p.buffers[p.output]!;
  const io = [...c.inputs, outBuf].map((b, index) => ({
    var: c.bufVar(b.id), ctype: c.ctype(b), index, name: cCommentText(b.name), elems: c.elems(b), ws: nPlanned + index, input: index < c.inputs.length,
  }));
  const body = loopNest(c, CUDA_EMITTERS, (dst, src, n) => `QZO_CHECK(cudaMemcpyAsync(${dst}, ${src}, sizeof(float) * (size_t)(${n}), cudaMemcpyDeviceToDevice, st), "loop-carried copy");`);
  const { sc, free, nPtrs, nScalars } = scalarView(c);
  // The output's size from the scalars alone (outside graph_<name>, where no dim_* variables exist).
  const dimHost = (d: string) => renameNames(d, (n) => (c.ints.has(n) ? `gen::cfg_${n}` : sc[`dim:${n}`] !== undefined ? `((int64_t)sc[${sc[`dim:${n}`]}])` : `dim_${n}`));
  return {
    graph: cIdentifier(p.graph, `${a.module.source}: graph`),
    role: p.role,
    steps: p.steps,
    peak: p.peakBytes ?? "0",
    nIO: c.nIO,
    nSlots: a.manifest.weights.length,
    nPtrs,
    nScalars,
    sc,
    free,
    io,
    slots,
    temps: views,
    outIndex: c.nIO - 1,
    outVar: c.bufVar(outBuf.id),
    outCtype: c.ctype(outBuf),
    outElems: c.elems(outBuf),
    outElemsHost: outBuf.shape.length ? outBuf.shape.map((d) => `(${dimHost(d)})`).join(" * ") : "1",
    outWs: nPlanned + c.nIO - 1,
    body,
  };
}

function generate(a: Artifact): GeneratedCode {
  const manifest = { ...a.manifest, target: "cuda" as const };
  const trainables = manifest.trainables;
  const base = programView(a, manifest, cudaReader);
  const text = templates.file("program.cu.njk", {
    ...base,
    unfused: a.pipeline === "unfused",
    slotBytes: manifest.weights.map((s) => s.bytes),
    entries: a.programs.map((p) => entryView(a, p)),
    update: { ...base.update, slots: trainables.length ? trainables.map((t) => t.slot) : [0] },
  });
  return { target: "cuda", files: [{ path: "kernels.cu", text }, ...templates.headers()], manifest };
}

export const cudaTarget: Target = {
  name: "cuda",
  stage: "cuda",
  unsupported: (a) => a.programs.flatMap((p) => unsupportedKernels(p, CUDA_EMITTERS)),
  generate,
  build: (code, opts) => buildCudaLibrary(code, opts ?? {}),
};
