/**
 * The generated CUDA compiles, for every shipped spec and format (the overrides of
 * cpu-vs-interpreter.test.ts): each variant to an sm_80 object (nvcc -c --keep at -O1, a compile
 * check: the same source and front end as the -O3 build, optimized less), whose PTX must use the
 * tensor cores (mma.sync m16n8k16) fed by ldmatrix; one spec as the full fat library at -O3
 * (sm_80, sm_89, sm_90a, static CUDA runtime). Nothing here runs on a GPU: on a machine without
 * one, the library must say so in one line, and the CUDA kernel backend must fail with one line that
 * says what to do. Skipped (with a message) where nvcc is missing.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { buildCudaLibraryAsync, cudaErrorLine, nvccVersion } from "../../src/compiler/build/build-cuda.js";
import type { BuiltLibrary } from "../../src/compiler/build/build-cpu.js";
import { TARGETS } from "../../src/compiler/codegen/targets.js";
import { configInts, evalConcrete, formatOf } from "../../src/compiler/ir/queries.js";
import { compileArtifact } from "../../src/compiler/pipeline.js";
import { kernelsOf } from "../../src/compiler/kernels/kernel-ir.js";
import { randomModel } from "../support/random-model.js";
import { unpackRaw } from "../../src/runtime/quant/codec.js";
import { cudaAvailable } from "../../src/runtime/backends/cuda-device.js";
import { createKernelBackend } from "../../src/runtime/backends/kernel-backend.js";
import { openKernelLibrary } from "../../src/native/index.js";
import { QzoError } from "../../src/util/errors.js";
import { buildCudaProbe } from "../../src/runtime/bench/roofline.js";
import { OTHER_SPEC_CASES, SMALL, SPEC_CASES } from "../support/spec-cases.js";

const root = new URL("../../", import.meta.url).pathname;

let nvcc = "";
try {
  nvcc = nvccVersion();
} catch (e) {
  console.warn(`cuda-compile.test.ts skipped: ${(e as Error).message}`);
}

const cases = [...SPEC_CASES, ...OTHER_SPEC_CASES].map((c): [string, string, Record<string, string | number>, string[]] => [c.name, c.spec, c.overrides, c.cudaArchs ?? ["80"]]);

function source(spec: string, overrides: Record<string, string | number>, unfused = false) {
  const r = checkFile(`${root}${spec}`, overrides);
  expect(r.diagnostics.map((d) => d.message)).toEqual([]);
  const m = r.modules[0]!;
  const graphs = ["lm", "distill", "flow", "forward"].filter((name) => m.graphs.some((g) => g.name === name));
  const artifact = compileArtifact(m, { graphs, pipeline: unfused ? "unfused" : "fused" });
  return { m, artifact, gen: TARGETS.cuda.generate(artifact) };
}

/** Runs async jobs two at a time (2 cores). */
async function pool<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}

describe.skipIf(!nvcc)("generated CUDA compiles with nvcc", () => {
  const objects = new Map<string, BuiltLibrary | Error>();
  let fat: BuiltLibrary | Error | undefined;
  const seconds = new Map<string, number>();

  beforeAll(async () => {
    const jobs: (() => Promise<void>)[] = cases.map(([name, spec, over, archs]) => async () => {
      const t0 = Date.now();
      try {
        objects.set(name, await buildCudaLibraryAsync(source(spec, over).gen, { archs, objectOnly: true, checkOnly: true, keep: true }));
      } catch (e) {
        objects.set(name, e as Error);
      }
      seconds.set(name, (Date.now() - t0) / 1000);
    });
    jobs.unshift(async () => {
      const t0 = Date.now();
      try {
        fat = await buildCudaLibraryAsync(source("models/llama.qzo", { ...SMALL, weight: "q4_0" }).gen);
      } catch (e) {
        fat = e as Error;
      }
      seconds.set("fat library (sm_80, sm_89, sm_90a)", (Date.now() - t0) / 1000);
    });
    await pool(jobs);
  }, 600_000);

  afterAll(() => {
    console.log(`nvcc: ${nvcc}\n${[...seconds].map(([n, s]) => `  ${s.toFixed(1)} s  ${n}`).join("\n")}`);
  });

  it.each(cases)("%s: object for its architectures (sm_80 and up), tensor cores in the PTX", (name) => {
    const r = objects.get(name);
    if (r instanceof Error) throw r;
    expect(r).toBeDefined();
    const dir = join(r!.path, "..");
    const ptx = readdirSync(dir).filter((f) => f.endsWith(".ptx"));
    expect(ptx.length).toBeGreaterThan(0);
    const text = ptx.map((f) => readFileSync(join(dir, f), "utf8")).join("\n");
    expect(text).toMatch(/mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32/);
    expect(text).toMatch(/ldmatrix\.sync\.aligned\.m8n8\.x4\.shared\.b16/);
    // Every matmul kernel instance (tiles, small M, gated MLP, LM head + CE) was generated.
    expect(text).toMatch(/mm_tile/);
    expect(text).toMatch(/mm_small/);
    if (name !== "fixture-only q5_sym" && !name.startsWith("sd3")) expect(text).toMatch(/distill_rows/);
  });

  it("the fat library (sm_80, sm_89, sm_90a, static runtime) builds and says in one line that there is no GPU here", () => {
    if (fat instanceof Error) throw fat;
    const lib = openKernelLibrary(fat!.path);
    try {
      const man = JSON.parse(lib.manifest());
      expect(man.target).toBe("cuda");
      for (const f of ["qzo_run_lm", "qzo_run_forward", "qzo_update", "qzo_cuda_status", "qzo_cuda_init", "qzo_sync_masters", "qzo_release", "qzo_time_lm"]) expect(lib.has(f), f).toBe(true);
      if (!cudaAvailable().ok) {
        expect(lib.call("qzo_cuda_init", [])).toBe(3);
        expect(lib.lastError()).toMatch(/^no CUDA (driver \(libcuda\.so\.1\) found|device.*)$/);
        // The kernel entries refuse cleanly too (no crash without a driver).
        expect(lib.call("qzo_update", new Array(man.trainables.length).fill(new Float32Array(1)).concat(man.update.scalars.map(() => 0)))).toBe(3);
      }
    } finally {
      lib.close();
    }
  });

  it("names the generated line of a compile error", () => {
    const msg = cudaErrorLine("/tmp/x/kernels.cu(12): error: identifier \"foo\" is undefined\n", "/tmp/x/kernels.cu");
    expect(msg).toBe('the generated CUDA did not compile: /tmp/x/kernels.cu:12: identifier "foo" is undefined');
  });
});

describe.skipIf(!nvcc)("the benchmark's CUDA code compiles", () => {
  it("the one-linear spec with its mse loss, fused and unfused (sm_90a object)", async () => {
    for (const pipeline of ["fused", "unfused"] as const) {
      const r = checkFile(`${root}models/bench/matmul.qzo`, { k: 256, n: 128 });
      expect(r.diagnostics.map((d) => d.message)).toEqual([]);
      const gen = TARGETS.cuda.generate(compileArtifact(r.modules[0]!, { graphs: ["l2"], pipeline }));
      expect(gen.files[0]!.text).toMatch(/qzo::mse_partial<<</);
      const built = await buildCudaLibraryAsync(gen, { archs: ["90a"], objectOnly: true, checkOnly: true });
      expect(built.path).toMatch(/\.o$/);
    }
  }, 300_000);

  it("the roofline probe (triad, fp32 FMA and mma.sync peaks) links as a library", () => {
    const built = buildCudaProbe({ archs: ["90a"], keep: true });
    const ptx = readdirSync(join(built.path, "..")).filter((f) => f.endsWith(".ptx"));
    expect(ptx.map((f) => readFileSync(join(built.path, "..", f), "utf8")).join("\n")).toMatch(/mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.f16\.f16\.f32/);
  }, 120_000);
});

describe("generated CUDA, without nvcc", () => {
  it.each(cases)("%s: the pipeline's manifest, slot sizes of the runtime's arrays, every kernel named", (_name, spec, over) => {
    const { m, artifact, gen } = source(spec, over);
    const { target, ...rest } = gen.manifest;
    expect(target).toBe("cuda");
    expect(rest).toEqual(artifact.manifest);
    expect(TARGETS.cpu.generate(artifact).manifest).toEqual({ ...artifact.manifest, target: "cpu" });
    // The byte sizes the library copies are the sizes of the arrays the runtime passes (backends/kernel-args.ts weightArrays).
    const ints = configInts(m);
    const model = randomModel(m, 1);
    gen.manifest.weights.forEach((s) => {
      const p = m.params.find((x) => x.name === s.param)!;
      const shape = p.type.shape.map((d) => evalConcrete(d, ints));
      const f = formatOf(m, p);
      if (!f) return expect(s.bytes).toBe(4 * shape.reduce((a, b) => a * b, 1));
      const w = model.stored(s.param, s.layer);
      if (w.kind !== "quant") throw new Error(`${s.name} is not quantized in the random model`);
      const packed = w.packed;
      const raw = unpackRaw(packed);
      const want =
        s.part === "codes"
          ? (f.layout.kind === "record" ? packed.storage["blocks"]! : packed.storage[f.layout.fields.find((x) => x.field === "code")!.tensor]!).byteLength
          : s.part === "books"
            ? 4 * raw.codebooks!.length
            : 4 * raw.scales.length;
      expect(s.bytes, s.name).toBe(want);
    });
    const program = gen.files[0]!.text;
    for (const p of artifact.programs) for (const k of kernelsOf(p.steps)) for (const f of k.from) expect(program).toContain(f.replace(/"/g, "'"));
  });
});

describe("CUDA availability", () => {
  it("the CUDA kernel backend on a machine without a GPU fails with one line saying what to do", () => {
    const avail = cudaAvailable();
    if (avail.ok) return; // a GPU machine: bench/gpu-check.ts covers it
    const r = checkFile(`${root}models/llama.qzo`, { ...SMALL, weight: "q4_0" });
    const m = r.modules[0]!;
    let err: unknown;
    try {
      createKernelBackend({ module: m, stored: () => { throw new Error("no weights needed"); } }, "cuda", { loss: "lm" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(QzoError);
    const msg = (err as Error).message;
    expect(msg).not.toContain("\n");
    expect(msg).toMatch(/^cannot use the CUDA backend: no CUDA (driver \(libcuda\.so\.1\) found|device .*); use --device cpu$/);
  });

  it("a missing nvcc is one QzoError line", () => {
    const old = process.env["NVCC"];
    process.env["NVCC"] = "/nonexistent/nvcc";
    try {
      expect(() => nvccVersion()).toThrow(QzoError);
      expect(() => nvccVersion()).toThrow(/^no CUDA compiler found \(tried '\/nonexistent\/nvcc'\): .*$/);
    } finally {
      if (old === undefined) delete process.env["NVCC"];
      else process.env["NVCC"] = old;
    }
  });
});
