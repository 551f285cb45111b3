/**
 * The kernel passes, each on its own: on small hand-written programs (what fires, what must not),
 * purity (a frozen program goes through every pipeline untouched), and the whole pipeline on the
 * shipped specs against golden `qzoc compile --emit kernels` output (which fusions fired, how many
 * slots, the peak temporary bytes). QZO_UPDATE_GOLDEN=1 rewrites the golden files.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { kernelsOf, type KBuffer, type KKernel, type KProgram, type KStep } from "../../src/compiler/kernels/kernel-ir.js";
import { lowerToKernels } from "../../src/compiler/kernels/lower.js";
import { PIPELINES, fuseEpilogues, fuseGatedMlp, fuseLmHeadCe, planBuffers, runPasses } from "../../src/compiler/kernels/passes/index.js";
import { printKernels } from "../../src/compiler/kernels/print.js";

const root = new URL("../../", import.meta.url).pathname;
const GOLDEN = join(root, "test", "compiler", "golden");

/** A program over buffers of the given shapes (inputs first), with the given steps; the last buffer is the output. */
function program(shapes: string[][], inputs: number, steps: KStep[]): KProgram {
  const buffers: KBuffer[] = shapes.map((shape, id) => ({
    id, name: `b${id}`, dtype: "f32", shape, role: id < inputs ? "input" : id === shapes.length - 1 ? "output" : "temp",
  }));
  return { module: "m", graph: "g", role: "graph", buffers, inputs: [...Array(inputs).keys()], output: shapes.length - 1, steps, passes: ["lower-to-kernels"] };
}
const k = (op: Omit<KKernel, "kind" | "from">): KKernel => ({ ...op, kind: "kernel", from: [`#${op.out}`] }) as KKernel;
const W = (param: string) => ({ param: { param } });
const B = (buffer: number) => ({ buffer });
const ops = (p: KProgram) => kernelsOf(p.steps).map((x) => x.op);

describe("fuse-epilogues", () => {
  const S = [["M", "K"], ["M", "N"], ["M", "N"], ["M", "N"]];
  it("folds an activation, and a residual add, into the matmul that only they read", () => {
    const act = fuseEpilogues.run(program(S.slice(0, 3), 1, [k({ op: "matmul", x: B(0), w: W("w"), out: 1 }), k({ op: "unary", fn: "gelu", x: B(1), out: 2 })]));
    expect(act.steps).toEqual([{ kind: "kernel", op: "matmul", x: B(0), w: W("w"), act: "gelu", out: 2, from: ["#1", "#2"] }]);
    const res = fuseEpilogues.run(program([["M", "K"], ["M", "N"], ["M", "N"], ["M", "N"]], 2, [k({ op: "matmul", x: B(0), w: W("w"), out: 2 }), k({ op: "binary", fn: "add", a: B(1), b: B(2), out: 3 })]));
    expect(res.steps).toEqual([{ kind: "kernel", op: "matmul", x: B(0), w: W("w"), residual: B(1), out: 3, from: ["#2", "#3"] }]);
    expect(res.passes).toEqual(["lower-to-kernels", "fuse-epilogues"]);
  });

  it("leaves a matmul whose result is read twice, a second activation, a product, and neg alone", () => {
    const twice = program(S, 1, [k({ op: "matmul", x: B(0), w: W("w"), out: 1 }), k({ op: "unary", fn: "silu", x: B(1), out: 2 }), k({ op: "binary", fn: "add", a: B(1), b: B(2), out: 3 })]);
    expect(ops(fuseEpilogues.run(twice))).toEqual(["matmul", "unary", "binary"]);
    const second = program(S, 1, [k({ op: "matmul", x: B(0), w: W("w"), out: 1 }), k({ op: "unary", fn: "silu", x: B(1), out: 2 }), k({ op: "unary", fn: "relu", x: B(2), out: 3 })]);
    expect(ops(fuseEpilogues.run(second))).toEqual(["matmul", "unary"]);
    const mul = program(S.slice(0, 3), 1, [k({ op: "matmul", x: B(0), w: W("w"), out: 1 }), k({ op: "binary", fn: "mul", a: B(1), b: { scalar: 2 }, out: 2 })]);
    expect(ops(fuseEpilogues.run(mul))).toEqual(["matmul", "binary"]);
    const neg = program(S.slice(0, 3), 1, [k({ op: "matmul", x: B(0), w: W("w"), out: 1 }), k({ op: "unary", fn: "neg", x: B(1), out: 2 })]);
    expect(ops(fuseEpilogues.run(neg))).toEqual(["matmul", "unary"]);
  });
});

describe("fuse-gated-mlp", () => {
  const S = [["M", "K"], ["M", "N"], ["M", "N"], ["M", "N"]];
  it("joins act(x W1) * (x W3) into one kernel reading x once", () => {
    const p = program(S, 1, [k({ op: "matmul", x: B(0), w: W("w1"), act: "silu", out: 1 }), k({ op: "matmul", x: B(0), w: W("w3"), out: 2 }), k({ op: "binary", fn: "mul", a: B(1), b: B(2), out: 3 })]);
    expect(fuseGatedMlp.run(p).steps).toEqual([{ kind: "kernel", op: "matmul_glu", x: B(0), gate: W("w1"), up: W("w3"), act: "silu", out: 3, from: ["#1", "#2", "#3"] }]);
  });

  it("not across different inputs, nor with a bias", () => {
    const two = program([["M", "K"], ["M", "K"], ["M", "N"], ["M", "N"], ["M", "N"]], 2, [
      k({ op: "matmul", x: B(0), w: W("w1"), act: "silu", out: 2 }), k({ op: "matmul", x: B(1), w: W("w3"), out: 3 }), k({ op: "binary", fn: "mul", a: B(2), b: B(3), out: 4 }),
    ]);
    expect(ops(fuseGatedMlp.run(two))).toEqual(["matmul", "matmul", "binary"]);
    const bias = program([["M", "K"], ["N"], ["M", "N"], ["M", "N"], ["M", "N"]], 2, [
      k({ op: "matmul", x: B(0), w: W("w1"), act: "silu", out: 2 }), k({ op: "matmul", x: B(0), w: W("w3"), bias: B(1), out: 3 }), k({ op: "binary", fn: "mul", a: B(2), b: B(3), out: 4 }),
    ]);
    expect(ops(fuseGatedMlp.run(bias))).toEqual(["matmul", "matmul", "binary"]);
  });
});

describe("fuse-lm-head-ce", () => {
  const S = [["B", "T", "K"], ["B", "T"], ["B", "T"], ["B", "T", "V"], []];
  it("computes the loss from the LM head's logits without storing them", () => {
    const p = program(S, 3, [k({ op: "matmul", x: B(0), w: W("out"), out: 3 }), k({ op: "next_token_ce", logits: B(3), tokens: B(1), mask: B(2), out: 4 })]);
    expect(fuseLmHeadCe.run(p).steps).toEqual([{ kind: "kernel", op: "matmul_ce", x: B(0), w: W("out"), tokens: B(1), mask: B(2), out: 4, from: ["#3", "#4"] }]);
  });

  it("not when the logits have a bias or another reader", () => {
    const bias = program([...S.slice(0, 3), ["V"], ["B", "T", "V"], []], 4, [k({ op: "matmul", x: B(0), w: W("out"), bias: B(3), out: 4 }), k({ op: "next_token_ce", logits: B(4), tokens: B(1), mask: B(2), out: 5 })]);
    expect(ops(fuseLmHeadCe.run(bias))).toEqual(["matmul", "next_token_ce"]);
    const read = program([...S.slice(0, 4), ["B", "T", "V"], []], 3, [
      k({ op: "matmul", x: B(0), w: W("out"), out: 3 }), k({ op: "unary", fn: "neg", x: B(3), out: 4 }), k({ op: "next_token_ce", logits: B(3), tokens: B(1), mask: B(2), out: 5 }),
    ]);
    expect(ops(fuseLmHeadCe.run(read))).toEqual(["matmul", "unary", "next_token_ce"]);
  });
});

describe("plan-buffers", () => {
  it("reuses the slot of a dead temporary of the same shape, never one still live", () => {
    const S = [["N"], ["N"], ["N"], ["N"], ["N"]];
    const chain = program(S, 1, [1, 2, 3, 4].map((o) => k({ op: "unary", fn: "silu", x: B(o - 1), out: o })));
    const p = planBuffers.run(chain);
    expect(p.buffers.map((b) => b.slot)).toEqual([undefined, 0, 1, 0, undefined]);
    expect(p.slots).toEqual(["4*(N)", "4*(N)"]);
    expect(p.peakBytes).toBe("4*(N) + 4*(N)");
  });

  it("keeps a value made before a loop and read inside it live for the whole loop", () => {
    const S = [["N"], ["N"], ["N"], ["N"], ["N"], ["N"]];
    const steps: KStep[] = [
      k({ op: "unary", fn: "silu", x: B(0), out: 1 }),
      k({ op: "copy", x: B(0), out: 2 }),
      { kind: "loop", var: "l", start: "0", end: "L", carried: [{ buffer: 2, yields: 4 }], from: "loop", body: [k({ op: "unary", fn: "relu", x: B(2), out: 3 }), k({ op: "binary", fn: "add", a: B(3), b: B(1), out: 4 })] },
      k({ op: "unary", fn: "neg", x: B(2), out: 5 }),
    ];
    const p = planBuffers.run(program(S, 1, steps));
    const slot = (id: number) => p.buffers[id]!.slot;
    expect(new Set([slot(1), slot(2), slot(3), slot(4)]).size).toBe(4);
  });
});

describe("the passes are pure", () => {
  const deepFreeze = <T>(x: T): T => {
    if (x && typeof x === "object" && !Object.isFrozen(x)) {
      Object.freeze(x);
      for (const v of Object.values(x)) deepFreeze(v);
    }
    return x;
  };
  it.each(["models/llama.qzo", "models/opt.qzo"])("every pipeline leaves the lowered program of %s unchanged", (spec) => {
    const m = checkFile(join(root, spec), {}).modules[0]!;
    for (const g of ["lm", "forward", "distill"].filter((name) => m.graphs.some((x) => x.name === name))) {
      const lowered = lowerToKernels(m, g);
      const copy = structuredClone(lowered);
      deepFreeze(lowered);
      for (const name of Object.keys(PIPELINES) as (keyof typeof PIPELINES)[]) expect(() => runPasses(lowered, name)).not.toThrow();
      expect(lowered).toEqual(copy);
    }
  });
});

describe("the fused pipeline on the shipped specs", () => {
  const emitted = (spec: string, graph: string) => {
    const m = checkFile(join(root, spec), {}).modules[0]!;
    const parts: string[] = [];
    const p = runPasses(lowerToKernels(m, graph), "fused", (pass, q) => parts.push(`# ---- after ${pass}\n${printKernels(q)}`));
    return { p, text: parts.join("\n").split(root).join("") };
  };

  it.each([
    ["models/llama.qzo", "lm", { matmul_glu: 1, matmul_ce: 1, residuals: 2, slots: 6 }],
    ["models/llama.qzo", "distill", { matmul_glu: 1, matmul_distill_ce: 1, residuals: 2, slots: 6 }],
    ["models/llama.qzo", "forward", { matmul_glu: 1, residuals: 2, slots: 6 }],
    ["models/opt.qzo", "lm", { matmul_ce: 1, residuals: 2, activations: 1, slots: 7 }],
    ["models/opt.qzo", "forward", { residuals: 2, activations: 1, slots: 7 }],
  ] as const)("%s, graph %s: the expected fusions fire; the text is the golden --emit kernels", (spec, graph, want) => {
    const { p, text } = emitted(spec, graph);
    const ks = kernelsOf(p.steps);
    const count = (f: (x: KKernel) => boolean) => ks.filter(f).length;
    expect({
      ...(want.matmul_glu !== undefined ? { matmul_glu: count((x) => x.op === "matmul_glu") } : {}),
      ...("matmul_ce" in want ? { matmul_ce: count((x) => x.op === "matmul_ce") } : {}),
      ...("matmul_distill_ce" in want ? { matmul_distill_ce: count((x) => x.op === "matmul_distill_ce") } : {}),
      residuals: count((x) => x.op === "matmul" && x.residual !== undefined),
      ...("activations" in want ? { activations: count((x) => x.op === "matmul" && x.act !== undefined) } : {}),
      slots: p.slots!.length,
    }).toEqual(want);
    expect(ks.some((x) => x.op === "next_token_ce" || x.op === "distill_ce")).toBe(false);
    const file = join(GOLDEN, `${spec.replace(/^.*\//, "").replace(".qzo", "")}.${graph}.kernels.txt`);
    if (process.env["QZO_UPDATE_GOLDEN"] || !existsSync(file)) {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(file, text);
    }
    expect(text).toBe(readFileSync(file, "utf8"));
  });
});
