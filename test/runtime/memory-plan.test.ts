/**
 * `qzo plan`'s memory terms: the weight terms are the byte sizes of the arrays the kernel backends
 * hold (backends/kernel-args.ts weightArrays, for every format, additive codebooks included); the
 * planned temporaries and scratch of one perturbed CPU call bound the peak RSS that call adds,
 * measured in a child process (Linux's clear_refs reset of the peak), and the temporaries alone
 * are at least 80% of it;
 * the Llama-2-13B-shaped AQLM 2x8 QZO step plans under 24 GiB on CUDA.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { compileModule } from "../../src/compiler/check.js";
import { compileArtifact } from "../../src/compiler/pipeline.js";
import { weightArrays } from "../../src/runtime/backends/kernel-args.js";
import { planMemory } from "../../src/runtime/plan/memory-plan.js";
import { randomModel } from "../support/random-model.js";
import { SMALL } from "../support/spec-cases.js";

const root = new URL("../../", import.meta.url).pathname;
const LLAMA = join(root, "models/llama.qzo");
const CLI = join(root, "dist/src/cli/qzo.js");
const LLAMA_13B = ["dim=5120", "hidden=13824", "n_layers=40", "n_heads=40", "n_kv_heads=40", "vocab=32000", "seq_len=4096", "weight=aqlm_2x8", "head=f16"];

describe("qzo plan", () => {
  it.each(["q4_0", "q4_1", "gptq_int4", "nf4", "aqlm_2x8"])("the weight terms are the bytes of the backend's arrays (%s)", (weight) => {
    const m = compileModule(LLAMA, { ...SMALL, weight });
    const man = compileArtifact(m, { graphs: ["lm"] }).manifest;
    const { slots } = weightArrays(randomModel(m, 3), man, "cpu");
    const held = new Map<string, number>();
    man.weights.forEach((s, i) => held.set(s.part, (held.get(s.part) ?? 0) + slots[i]!.byteLength));
    const plan = planMemory(m, "cpu", "qzo step", { batch: 2, seq: 16 });
    const term = (name: string) => plan.terms.find((t) => t.name === name)?.bytes ?? 0;
    expect(term("quantized codes, as stored")).toBe(held.get("codes"));
    expect(term("codebooks, zero-points, mins (fp32)")).toBe((held.get("books") ?? 0) + (held.get("zeros") ?? 0) + (held.get("mins") ?? 0));
    expect(term("trainable scales (fp32 masters)") + term("frozen scales (fp32)")).toBe(held.get("scales"));
    expect(term("float parameters (fp32)")).toBe(held.get("data"));
  });

  it.runIf(existsSync("/proc/self/clear_refs"))(
    "the planned temporaries and scratch of a perturbed CPU call bound its measured peak, and the temporaries alone are most of it",
    async () => {
      for (const [over, shape] of [
        [{ dim: 384, hidden: 1024, n_layers: 2, n_heads: 8, n_kv_heads: 8, vocab: 512, seq_len: 1024, weight: "q4_0" }, [8, 384]],
        [{ dim: 256, hidden: 704, n_layers: 2, n_heads: 8, n_kv_heads: 4, vocab: 2048, seq_len: 1024, weight: "aqlm_2x8" }, [4, 256]],
      ] as const) {
        const r = await execa("node", [join(root, "test/support/measure-call-peak.mjs"), root, JSON.stringify(over), JSON.stringify(shape)], { reject: false });
        expect(r.exitCode, r.stderr).toBe(0);
        const { measured, terms } = JSON.parse(r.stdout) as { measured: number; terms: Record<string, number> };
        const temporaries = terms["planned temporaries of 'lm'"]!;
        const planned = temporaries + terms["CPU kernel scratch (1 thread)"]! + terms["output of 'lm'"]!;
        // The scratch is an allowance (malloc may serve it from memory already resident); the
        // temporaries are the call's real working set.
        expect(measured, JSON.stringify({ over, planned })).toBeLessThanOrEqual(planned);
        expect(measured, JSON.stringify({ over, temporaries })).toBeGreaterThanOrEqual(0.8 * temporaries);
      }
    },
    120_000,
  );

  it("a Llama-2-13B-shaped AQLM 2x8 QZO step at batch 16 x 512 plans under 24 GiB on CUDA, every term named", async () => {
    const r = await execa("node", [CLI, "plan", "--spec", LLAMA, ...LLAMA_13B.flatMap((s) => ["--set", s]), "--batch", "16", "--seq", "512", "--json"], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { parameters: number; plans: { device: string; mode: string; total: number; terms: { name: string; bytes: number }[] }[] };
    expect(out.parameters / 1e9).toBeCloseTo(13.0, 1);
    const step = out.plans.find((p) => p.device === "cuda" && p.mode === "qzo step")!;
    expect(step.total).toBeLessThan(24 * 2 ** 30);
    // 2 bits per quantized weight: the codes of the 40 layers' linears.
    const linears = 40 * (4 * 5120 * 5120 + 3 * 5120 * 13824);
    expect(step.terms.find((t) => t.name === "quantized codes, as stored")!.bytes).toBe(linears / 4);
    expect(step.terms.map((t) => t.name)).toContain("perturbed scales (fp32)");
    expect(out.plans.map((p) => `${p.device} ${p.mode}`)).toEqual(["cpu qzo step", "cpu inference", "cuda qzo step", "cuda inference"]);
  });

  it("bad sizes are usage errors in one line; a missing spec is one line; OPT (whose training loss is classification) plans its lm loss", async () => {
    const r = await execa("node", [CLI, "plan", "--spec", LLAMA, "--batch", "0", "--seq", "8"], { reject: false });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const missing = await execa("node", [CLI, "plan", "--spec", "no/such.qzo", "--batch", "1", "--seq", "8"], { reject: false });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr.trim()).toBe("qzo: no/such.qzo: no such file");
    const opt = await execa("node", [CLI, "plan", "--spec", join(root, "models/opt.qzo"), "--batch", "2", "--seq", "16", "--device", "cpu"], { reject: false });
    expect(opt.exitCode, opt.stderr).toBe(0);
    expect(opt.stdout).toContain("qzo step on CPU ('lm')");
  });
});
