/**
 * The CPU target: the artifact's kernel programs as one C++17 program (OpenMP) rendered from
 * templates/cpu/, including the runtime headers of templates/cpu/include/qzo/, and built with g++
 * (build/build-cpu.ts). The library exports, per graph, `qzo_run_<graph>`, and `qzo_update`,
 * `qzo_manifest` and `qzo_last_error` (the ABI of src/compiler/abi.ts).
 */
import { buildCpuLibrary } from "../../build/build-cpu.js";
import type { Artifact } from "../../pipeline.js";
import { entryContext, loopNest, plannedTemps, programView, scalarView, unsupportedKernels, type CTarget } from "../c/entry.js";
import { cIdentifier } from "../c/literal.js";
import { templatesOf } from "../c/templates.js";
import type { GeneratedCode, Target } from "../target.js";
import { CPU_EMITTERS, type CpuContext } from "./emitters.js";
import { cpuReader } from "./reader.js";

const templates = templatesOf("cpu");

function generate(a: Artifact): GeneratedCode {
  const m = a.module;
  const manifest = { ...a.manifest, target: "cpu" as const };
  const entries = a.programs.map((p) => {
    const nIO = p.inputs.length + 1;
    const target: CTarget = { name: "CPU", slotRef: (i) => `ptrs[${nIO} + ${i}]`, render: templates.macro };
    const c: CpuContext = { ...entryContext(a, p, target), unfused: a.pipeline === "unfused" };
    const { slots, views } = plannedTemps(c);
    const { sc, free, nPtrs, nScalars } = scalarView(c);
    return {
      graph: cIdentifier(p.graph, `${m.source}: graph`),
      role: p.role,
      steps: p.steps,
      peak: p.peakBytes ?? "0",
      nPtrs,
      nScalars,
      sc,
      free,
      io: [...c.inputs, p.buffers[p.output]!].map((b, index) => ({ var: c.bufVar(b.id), ctype: c.ctype(b), index })),
      slots,
      temps: views,
      body: loopNest(c, CPU_EMITTERS, (dst, src, n) => `std::memcpy(${dst}, ${src}, sizeof(float) * (size_t)(${n}));`),
    };
  });
  const text = templates.file("program.cpp.njk", { ...programView(a, manifest, cpuReader), entries });
  return { target: "cpu", files: [{ path: "kernels.cpp", text }, ...templates.headers()], manifest };
}

export const cpuTarget: Target = {
  name: "cpu",
  stage: "cpp",
  unsupported: (a) => a.programs.flatMap((p) => unsupportedKernels(p, CPU_EMITTERS)),
  generate,
  build: (code) => buildCpuLibrary(code),
};
