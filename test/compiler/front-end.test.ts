import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkFile, checkSource } from "../../src/compiler/check.js";
import { moduleFromJson, moduleToJson } from "../../src/compiler/ir/json.js";
import { printModule } from "../../src/compiler/ir/print.js";
import { trainHyperFor, type GraphIR, type ModuleIR } from "../../src/compiler/ir/ir.js";
import { SourceFile } from "../../src/compiler/source.js";
import { parseSource } from "../../src/compiler/syntax/parse.js";
import { prettyPrint } from "../../src/compiler/syntax/pretty.js";
import { stripSpans } from "./strip.js";

const root = new URL("../../", import.meta.url).pathname;
const shipped = [
  ...readdirSync(`${root}models`).filter((f) => f.endsWith(".qzo")).map((f) => `models/${f}`),
  ...readdirSync(`${root}models/formats`).map((f) => `models/formats/${f}`),
];

/** stories260K's shape, as its checkpoint metadata gives it. */
const STORIES260K = { dim: 64, hidden: 172, n_layers: 5, n_heads: 8, n_kv_heads: 4, vocab: 512, seq_len: 512 };

function model(path: string, overrides = {}): ModuleIR {
  const r = checkFile(`${root}${path}`, overrides);
  expect(r.diagnostics.map((d) => d.message)).toEqual([]);
  return r.modules[0]!;
}

function ops(g: GraphIR): string[] {
  const out: string[] = [];
  const walk = (nodes: GraphIR["body"]["nodes"]) => {
    for (const n of nodes) {
      out.push(n.op);
      if (n.body) walk(n.body.nodes);
    }
  };
  walk(g.body.nodes);
  return out;
}

describe("shipped specs", () => {
  it.each(shipped)("%s checks without errors", (f) => {
    expect(checkFile(`${root}${f}`).diagnostics.map((d) => d.message)).toEqual([]);
  });

  it.each(shipped)("%s is in canonical form, and fmt re-parses to the same AST", (f) => {
    const text = readFileSync(`${root}${f}`, "utf8");
    const first = parseSource(new SourceFile(f, text));
    const printed = prettyPrint(first.ast!);
    expect(printed).toBe(text);
    const again = parseSource(new SourceFile(f, printed));
    expect(stripSpans(again.ast)).toEqual(stripSpans(first.ast));
  });
});

describe("the formats of models/formats", () => {
  const formats = Object.fromEntries(
    ["gguf", "gptq", "nf4", "aqlm"].flatMap((f) => checkFile(`${root}models/formats/${f}.qzo`).formats).map((f) => [f.name, f]),
  );

  it("derive the dequantization formulas of the format specifications", () => {
    expect(formats["q8_0"]!.formula).toBe("w = scale * q");
    expect(formats["q4_0"]!.formula).toBe("w = scale * (q - 8)");
    expect(formats["q4_1"]!.formula).toBe("w = scale * q + min");
    expect(formats["gptq_int4"]!.formula).toBe("w = scale * (q - zero)");
    expect(formats["nf4"]!.formula).toBe("w = scale * nf4_levels[q]");
    expect(formats["aqlm_2x8"]!.formula).toBe("w = scale * sum_m codebooks[m, q_m, c % 8]");
  });

  it("give GGUF's block sizes and bits per weight (ggml: Q8_0 34 bytes, Q4_0 18, Q4_1 20 per 32 weights)", () => {
    expect(formats["q8_0"]!.bitsPerWeight).toBe(8.5);
    expect(formats["q4_0"]!.bitsPerWeight).toBe(4.5);
    expect(formats["q4_1"]!.bitsPerWeight).toBe(5);
    expect(formats["gptq_int4"]!.bitsPerWeight).toBe(4 + (16 + 4) / 128);
    expect(formats["aqlm_2x8"]!.bitsPerWeight).toBe(2);
  });

  it("place one AQLM code per table for each vector of 8 weights, and reject codes per weight", () => {
    const layout = formats["aqlm_2x8"]!.layout;
    expect(layout.kind === "tensors" && layout.fields[0]!.at).toEqual(["r", "(c/8)", "m"]);
    const perWeight = readFileSync(`${root}models/formats/aqlm.qzo`, "utf8").replace("at [r, c / 8, m]", "at [r, c % 8, m]");
    const d = checkSource(new SourceFile("aqlm.qzo", perWeight)).diagnostics.map((x) => x.message);
    expect(d).toEqual(["code of (r=0, vector 1, table 0) and of (r=0, vector 0, table 0) land in the same place of 'codes' [0, 0, 0] bit 0"]);
  });

  it("place Q4_0's element j < 16 in the low nibble of byte 2 + j and j + 16 in its high nibble", () => {
    const layout = formats["q4_0"]!.layout;
    expect(layout.kind).toBe("record");
    if (layout.kind !== "record") return;
    expect(layout.fields.find((f) => f.field === "code")!.bitExpr).toBe("8*(i%16) + 4*(i/16) + 16");
  });
});

describe("models/llama.qzo lowered to IR", () => {
  const m = model("models/llama.qzo", STORIES260K);

  it("types the forward graph with symbolic shapes", () => {
    const fwd = m.graphs.find((g) => g.name === "forward")!;
    const input = fwd.values[fwd.inputs[0]!]!;
    expect(input.type).toEqual({ elem: { kind: "dtype", dtype: "i32" }, shape: ["B", "T"] });
    expect(fwd.values[fwd.outputs[0]!]!.type.shape).toEqual(["B", "T", "vocab"]);
    expect(ops(fwd).filter((o) => o === "linear")).toHaveLength(8);
    expect(ops(fwd)[0]).toBe("param");
    expect(ops(fwd)).toContain("for");
  });

  it("keeps the layer loop as one loop with the residual stream carried", () => {
    const fwd = m.graphs.find((g) => g.name === "forward")!;
    const loop = fwd.body.nodes.find((n) => n.op === "for")!;
    expect(loop.attrs).toMatchObject({ var: "l", from: "0", to: "n_layers" });
    expect(loop.body!.args.map((a) => fwd.values[a]!.name)).toEqual(["x"]);
    const wk = loop.body!.nodes.find((n) => n.op === "param" && n.attrs["name"] === "wk")!;
    expect(fwd.values[wk.outputs[0]!]!.type.shape).toEqual(["dim*n_kv_heads/n_heads", "dim"]);
  });

  it("inlines forward into the losses", () => {
    const lm = m.graphs.find((g) => g.name === "lm")!;
    expect(lm.role).toBe("loss");
    expect(ops(lm).at(-1)).toBe("next_token_ce");
    expect(lm.values[lm.outputs[0]!]!.type.shape).toEqual([]);
  });

  it("falls back to f16 for ffn_down when hidden = 172 is not a multiple of Q4_0's 32", () => {
    const w2 = m.params.find((p) => p.name === "w2")!;
    expect(w2.resolved).toBe("f16");
    expect(m.params.find((p) => p.name === "w1")!.resolved).toBe("q4_0");
  });

  it("trains the scales of the quantized linears by default, and not the f16 fallback", () => {
    expect(m.train.trainable.map((t) => `${t.param}.${t.field}`)).toEqual([
      "wq.scale", "wk.scale", "wv.scale", "wo.scale", "w1.scale", "w3.scale", "output.scale",
    ]);
    expect(m.train).toMatchObject({ eps: 1e-2, epsMode: "relative", lr: 2e-3, schedule: "linear", clip: 100, batch: 16, steps: 2500 });
  });

  it("has the distill loss's own hyperparameters over the train block's (train distill { ... })", () => {
    expect(m.train.byLoss).toEqual({ distill: { lr: 5e-3, batch: 8, steps: 9000, evalEvery: 1500 } });
    expect(trainHyperFor(m.train, "distill")).toMatchObject({ eps: 1e-2, epsMode: "relative", lr: 5e-3, schedule: "linear", batch: 8, steps: 9000, evalEvery: 1500 });
    expect(trainHyperFor(m.train, "lm")).toMatchObject({ lr: 2e-3, batch: 16, steps: 2500 });
    expect(printModule(m)).toContain("  with loss distill: lr 0.005; batch 8; steps 9000; eval_every 1500");
  });

  it("serializes to JSON and back without loss", () => {
    const back = moduleFromJson(moduleToJson(m));
    expect(back).toEqual(m);
    expect(printModule(back)).toBe(printModule(m));
  });

  it("prints every node with the source line it came from", () => {
    const text = printModule(m);
    expect(text).toMatch(/= rmsnorm\(%\d+:x, %\d+, eps = 0\.00001\)  # .*models\/llama\.qzo:\d+:\d+/);
    expect(text).toContain("param @wq[l in 0..n_layers]: q4_0[dim, dim]");
  });
});

describe("comments", () => {
  it("survive formatting next to the items they were written by", () => {
    const text = [
      "# file header",
      "",
      "# about q",
      "format q { # trailing on the header",
      "  code i8 # the code",
      "  # before block",
      "  block 32 along in",
      "  scale f16",
      "  layout record 34 {",
      "    scale at 0",
      "    code[i] at 2 + i",
      "    # end of layout",
      "  }",
      "}",
      "# end of file",
      "",
    ].join("\n");
    const r = parseSource(new SourceFile("c.qzo", text));
    const printed = prettyPrint(r.ast!);
    for (const c of ["# file header", "# about q", "# trailing on the header", "# the code", "# before block", "# end of layout", "# end of file"]) {
      expect(printed).toContain(c);
    }
    expect(stripSpans(parseSource(new SourceFile("c.qzo", printed)).ast)).toEqual(stripSpans(r.ast));
    expect(checkSource(new SourceFile("c.qzo", printed)).diagnostics).toEqual([]);
  });
});
