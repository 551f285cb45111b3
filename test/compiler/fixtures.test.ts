/**
 * Specs that exist only as test fixtures (test/fixtures/specs): a quantization
 * format and a model variant that no shipped spec describes. Both must check
 * and lower to IR with no change to the compiler; the tests pin concrete facts
 * of the IR that the compiler derives from the spec alone.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkFile, compileModule } from "../../src/compiler/check.js";
import { diagnosticHeadline } from "../../src/compiler/diagnostics.js";
import type { BlockIR, GraphIR, ModuleIR, NodeIR } from "../../src/compiler/ir/ir.js";
import { printModule } from "../../src/compiler/ir/print.js";

const SPECS = fileURLToPath(new URL("../fixtures/specs/", import.meta.url));
const spec = (name: string) => `${SPECS}${name}`;

/** Every node of a block, loop bodies included, in program order. */
function allNodes(b: BlockIR): NodeIR[] {
  return b.nodes.flatMap((n) => [n, ...(n.body ? allNodes(n.body) : [])]);
}

/** The ops of a block in order, with `param` and `const` nodes left out. */
function ops(b: BlockIR): string[] {
  return b.nodes.filter((n) => n.op !== "param" && n.op !== "const").map((n) => n.op);
}

function graph(m: ModuleIR, name: string): GraphIR {
  const g = m.graphs.find((x) => x.name === name);
  if (!g) throw new Error(`no graph ${name}`);
  return g;
}

function shapeOf(g: GraphIR, id: number): string {
  const t = g.values[id]!.type;
  return `${t.elem.kind === "dtype" ? t.elem.dtype : t.elem.format}[${t.shape.join(", ")}]`;
}

function forNode(g: GraphIR): NodeIR {
  const loop = g.body.nodes.find((n) => n.op === "for");
  if (!loop) throw new Error("no loop");
  return loop;
}

describe("fixture format q5_sym (5-bit symmetric codes, blocks of 64, f32 scales)", () => {
  it("checks on its own as a formats-only file", () => {
    const r = checkFile(spec("q5_sym.qzo"));
    expect(r.diagnostics.map(diagnosticHeadline)).toEqual([]);
    expect(r.modules).toEqual([]);
    expect(r.formats.map((f) => f.name)).toEqual(["q5_sym"]);
  });

  it("derives code, block, scale, formula, layout and bits per weight", () => {
    const [f] = checkFile(spec("q5_sym.qzo")).formats;
    expect(f!.code).toEqual({ signed: true, bits: 5, offset: 0 });
    expect(f!.block).toEqual({ size: 64, axis: "in" });
    expect(f!.scale).toEqual({ dtype: "f32", per: "block" });
    expect(f!.zero).toBeUndefined();
    expect(f!.min).toBeUndefined();
    expect(f!.codebooks).toEqual([]);
    expect(f!.formula).toBe("w = scale * q");
    expect(f!.bitsPerWeight).toBe(5.5);
    expect(f!.layout).toEqual({
      kind: "record",
      bytes: 44,
      fields: [
        { field: "scale", bitExpr: "0" },
        { field: "code", index: "i", bitExpr: "5*i + 32" },
      ],
    });
    expect(f!.loc).toMatchObject({ line: 5, col: 8 });
  });
});

describe("fixture model tiny_q5 (Llama-style, linears in q5_sym)", () => {
  const m = compileModule(spec("tiny_q5.qzo"));

  it("checks and carries the imported format into the module", () => {
    expect(m.name).toBe("tiny_q5");
    expect(m.formats.map((f) => f.name)).toEqual(["q5_sym"]);
    expect(m.formats[0]!.bitsPerWeight).toBe(5.5);
    expect(m.config.find((c) => c.name === "weight")!.value).toEqual({ type: "format", value: "q5_sym", expr: "q5_sym" });
  });

  it("types the quantized parameters with the format through the config entry", () => {
    const p = (n: string) => m.params.find((x) => x.name === n)!;
    expect(p("wq").type).toEqual({ elem: { kind: "quant", format: "q5_sym" }, shape: ["dim", "dim"] });
    expect(p("wq").array).toEqual({ var: "l", from: "0", to: "n_layers" });
    expect(p("w1").type.shape).toEqual(["hidden", "dim"]);
    // hidden = 256 is a multiple of 64, so the fallback is declared but not used.
    expect(p("w2").fallback).toBe("f16");
    expect(p("w2").resolved).toBe("q5_sym");
    expect(p("output").sources["gguf"]!.map((s) => s.tensor)).toEqual(["output.weight", "token_embd.weight"]);
    expect(p("tok_embeddings").type).toEqual({ elem: { kind: "dtype", dtype: "f32" }, shape: ["vocab", "dim"] });
  });

  it("lowers forward: embedding, a layer loop, the final norm and the head", () => {
    const g = graph(m, "forward");
    expect(ops(g.body)).toEqual(["embedding", "for", "rmsnorm", "linear"]);
    const loop = forNode(g);
    expect(loop.attrs).toEqual({ var: "l", from: "0", to: "n_layers" });
    expect(ops(loop.body!)).toEqual([
      "rmsnorm", "linear", "rope", "linear", "rope", "linear", "attention", "linear", "add",
      "rmsnorm", "linear", "silu", "linear", "mul", "linear", "add",
    ]);
    // One loop-carried value, the residual stream x.
    expect(loop.body!.args.map((a) => g.values[a]!.name)).toEqual(["x"]);
    expect(shapeOf(g, loop.body!.args[0]!)).toBe("f32[B, T, dim]");
    expect(g.inputs.map((i) => shapeOf(g, i))).toEqual(["i32[B, T]"]);
    expect(g.outputs.map((o) => shapeOf(g, o))).toEqual(["f32[B, T, vocab]"]);
    // Quantized weights flow into linear as format-typed values.
    const wq = allNodes(g.body).find((n) => n.op === "param" && n.attrs["name"] === "wq")!;
    expect(wq.attrs).toEqual({ name: "wq", index: "l" });
    expect(shapeOf(g, wq.outputs[0]!)).toBe("q5_sym[dim, dim]");
    const attn = allNodes(g.body).find((n) => n.op === "attention")!;
    expect(attn.attrs).toEqual({ heads: 4, kv_heads: 4, causal: true });
    const rope = allNodes(g.body).find((n) => n.op === "rope")!;
    expect(rope.attrs).toEqual({ heads: 4, theta: 10000, style: "interleaved" });
    const mlpHidden = allNodes(g.body).find((n) => n.op === "silu")!;
    expect(shapeOf(g, mlpHidden.outputs[0]!)).toBe("f32[B, T, hidden]");
  });

  it("inlines forward into the loss, which returns an f32 scalar", () => {
    const l = graph(m, "lm");
    expect(l.role).toBe("loss");
    expect(ops(l.body)).toEqual(["embedding", "for", "rmsnorm", "linear", "next_token_ce"]);
    expect(shapeOf(l, l.outputs[0]!)).toBe("f32[]");
  });

  it("takes every train setting and the trainable selection", () => {
    expect(m.train).toMatchObject({
      loss: "lm", eps: 1e-3, epsMode: "relative", lr: 1e-6, schedule: "cosine", warmup: 10,
      clip: 100, directions: 1, z: "rademacher", momentum: 0.5, stepSize: "rms", scaleFloor: 1e-7, batch: 4, steps: 100, evalEvery: 50, seed: 7,
    });
    // scales(linear) - scales("output"): the quantized linears of the layers only.
    expect(m.train.trainable.map((t) => `${t.param}.${t.field}`)).toEqual([
      "wq.scale", "wk.scale", "wv.scale", "wo.scale", "w1.scale", "w2.scale", "w3.scale",
    ]);
  });

  it("falls back to f16 for w2 when the block does not divide hidden", () => {
    const m2 = compileModule(spec("tiny_q5.qzo"), { hidden: 96 });
    const w2 = m2.params.find((p) => p.name === "w2")!;
    expect(w2.type.elem).toEqual({ kind: "quant", format: "q5_sym" });
    expect(w2.resolved).toBe("f16");
    // A parameter that falls back is no longer quantized, so it has no scale to train.
    expect(m2.train.trainable.map((t) => t.param)).not.toContain("w2");
    expect(printModule(m2)).toContain("param @w2[l in 0..n_layers]: q5_sym[dim, hidden] or f16  (stored as f16 with the config defaults)");
  });

  it("prints the format in the IR text", () => {
    const text = printModule(m);
    expect(text).toContain("format q5_sym  # ");
    expect(text).toContain("  code i5; block 64 along in; scale f32 per block\n  w = scale * q  (5.5 bits per weight)\n  layout record 44 bytes\n    scale at bit 0\n    code[i] at bit 5*i + 32\n");
  });
});

describe("fixture model gpt2_tiny (LayerNorm, biases, GELU MLP, learned positions)", () => {
  const m = compileModule(spec("gpt2_tiny.qzo"));

  it("checks with a derived config entry and no formats", () => {
    expect(m.name).toBe("gpt2_tiny");
    expect(m.formats).toEqual([]);
    const hidden = m.config.find((c) => c.name === "hidden")!;
    expect(hidden.value).toEqual({ type: "int", value: 256, expr: "4 * dim" });
    expect(hidden.expansion).toBe("4*dim");
    expect(m.params).toHaveLength(20);
    expect(m.params.find((p) => p.name === "fc")!.sources["hf"]).toEqual([
      { tensor: "transformer.h.{l}.mlp.c_fc.weight", transforms: [{ name: "transpose", args: [] }] },
    ]);
  });

  it("lowers forward with learned positions, LayerNorm blocks and the inlined GELU MLP", () => {
    const g = graph(m, "forward");
    expect(ops(g.body)).toEqual(["embedding", "positions", "embedding", "add", "for", "layernorm", "linear"]);
    const loop = forNode(g);
    expect(ops(loop.body!)).toEqual([
      "layernorm", "linear", "linear", "linear", "attention", "linear", "add",
      // mlp(...) inlined: linear, gelu, linear
      "layernorm", "linear", "gelu", "linear", "add",
    ]);
    const nodes = allNodes(g.body);
    expect(nodes.find((n) => n.op === "positions")!.attrs).toEqual({ offset: 0 });
    // Every linear of the layer has a bias (three inputs); the tied head has none.
    const linears = nodes.filter((n) => n.op === "linear");
    expect(linears.map((n) => n.inputs.length)).toEqual([3, 3, 3, 3, 3, 3, 2]);
    expect(nodes.filter((n) => n.op === "layernorm").every((n) => n.inputs.length === 3 && n.attrs["eps"] === 1e-5)).toBe(true);
    const gelu = nodes.find((n) => n.op === "gelu")!;
    expect(shapeOf(g, gelu.outputs[0]!)).toBe("f32[B, T, 4*dim]");
    // The inlined MLP's nodes point at the mlp graph's source lines.
    const mlp = m.graphs.find((x) => x.name === "mlp")!;
    expect(gelu.loc.line).toBe(mlp.loc.line + 1);
    // The head is tied to the token embedding table.
    const head = linears[linears.length - 1]!;
    const headW = nodes.find((n) => n.outputs[0] === head.inputs[1])!;
    expect(headW.attrs).toEqual({ name: "wte" });
    expect(shapeOf(g, head.outputs[0]!)).toBe("f32[B, T, vocab]");
  });

  it("binds the mlp graph's dimensions from its inputs", () => {
    const mlp = graph(m, "mlp");
    expect(mlp.inputs.map((i) => shapeOf(mlp, i))).toEqual([
      "f32[B, T, dim]", "f32[4*dim, dim]", "f32[4*dim]", "f32[dim, 4*dim]", "f32[dim]",
    ]);
    expect(ops(mlp.body)).toEqual(["linear", "gelu", "linear"]);
  });

  it("selects float weights by glob pattern", () => {
    expect(m.train.trainable.map((t) => `${t.param}.${t.field}`)).toEqual([
      "ln1_w.weight", "ln1_b.weight", "ln2_w.weight", "ln2_b.weight", "lnf_w.weight", "lnf_b.weight",
    ]);
    expect(m.train).toMatchObject({ loss: "lm", eps: 1e-4, epsMode: "absolute", lr: 1e-5, schedule: "constant" });
  });
});
