/**
 * The SD3-style diffusion transformer (models/sd3.qzo) against the mmdit-tiny fixture, made by an
 * independent PyTorch implementation from the diffusers and bitsandbytes sources (diffusers' own
 * classes reproduce its outputs): the forward pass for the F32 weights and both NF4 copies
 * (bitsandbytes' layout), the intermediates our layout ops produce, the three losses through
 * `qzo eval --json`, and the DDPM schedule. Then, at another size (3 blocks, odd widths,
 * non-square latents, NF4 blocks that span rows and a short last block), the CPU kernels against
 * the interpreter, perturbed and updated; QZO distillation toward the F32 model lowers the NF4
 * model's held-out loss and exports bitsandbytes' layout with only absmax changed; `qzo quantize
 * --format nf4` reproduces the fixture's NF4 files byte for byte (bitsandbytes made them); the sampler
 * takes Euler steps of the flow ODE; bad latent files fail in one line.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { beforeAll, describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { createKernelBackend } from "../../src/runtime/backends/kernel-backend.js";
import { ddpmSchedule, latentsBatch, loadLatents } from "../../src/runtime/data/latents.js";
import { flowSigmas } from "../../src/runtime/infer/diffusion.js";
import { applyUpdate } from "../../src/runtime/interpret/update.js";
import { runGraph, type ParamValue, type Tensor } from "../../src/runtime/interpret/interpreter.js";
import * as K from "../../src/runtime/interpret/ops.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { decodeBytesToF32 } from "../../src/runtime/model-files/index.js";
import { readSafetensors } from "../../src/runtime/model-files/safetensors.js";
import { writeSafetensors } from "../../src/runtime/model-files/safetensors-write.js";
import { unpack } from "../../src/runtime/quant/codec.js";
import { randomModel, rng } from "../support/random-model.js";

const root = new URL("../../", import.meta.url).pathname;
const FX = join(root, "..", "shared", "fixtures", "mmdit-tiny");
const MODELS = [
  { dir: FX, tag: "f32" },
  { dir: join(FX, "nf4"), tag: "nf4" },
  { dir: join(FX, "nf4-all"), tag: "nf4_all" },
];
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });
const tmp = () => mkdtempSync(join(tmpdir(), "qzo-mmdit-"));

function tensors(file: string): Record<string, Tensor & { data: Float32Array }> {
  const st = readSafetensors(file);
  return Object.fromEntries([...st.tensors].map(([k, info]) => [k, { shape: [...info.shape], data: decodeBytesToF32(info, st.readTensorBytes(k)) }]));
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

/** Random latents: x0 [n, c, h, w], encoder_hidden_states [n, L, joint], pooled_projections [n, pooled], gaussian. */
function writeLatents(file: string, n: number, seed: number, s: { c: number; h: number; w: number; L: number; joint: number; pooled: number }): string {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const t = (name: string, shape: number[]) => {
    const d = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, gauss);
    return { name, dtype: "F32" as const, shape, data: new Uint8Array(d.buffer) };
  };
  writeSafetensors(file, [t("x0", [n, s.c, s.h, s.w]), t("encoder_hidden_states", [n, s.L, s.joint]), t("pooled_projections", [n, s.pooled])]);
  return file;
}
const FIXTURE_SIZE = { c: 4, h: 16, w: 16, L: 7, joint: 24, pooled: 20 };

const haveFixture = existsSync(join(FX, "config.json"));

describe.skipIf(!haveFixture)("the mmdit-tiny fixture", () => {
  const inp = haveFixture ? tensors(join(FX, "inputs.safetensors")) : {};
  const exp = haveFixture ? tensors(join(FX, "expected.safetensors")) : {};
  const forwardInputs = () => ({ latents: inp["hidden_states"]!, encoder_hidden_states: inp["encoder_hidden_states"]!, pooled_projections: inp["pooled_projections"]!, timestep: inp["timestep"]! });

  it.each(MODELS)("$tag: the interpreter's forward pass equals the expected output within 1e-4 (outputs of RMS ~1.3)", ({ dir, tag }) => {
    const m = bindModel(dir);
    expect(m.module.name).toBe("sd3");
    const out = runGraph(m.module, "forward", forwardInputs(), m.weights);
    expect(out.shape).toEqual([2, 4, 16, 16]);
    expect(maxAbs(out.data, exp[`out_${tag}`]!.data)).toBeLessThan(1e-4);
  });

  it("the layout ops reproduce the fixture's intermediates: the cropped position table and the timestep projection", () => {
    const m = bindModel(FX);
    const table = m.weights.get("pos_table", undefined) as Extract<ParamValue, { kind: "float" }>;
    const crop = K.posCrop({ shape: table.shape, data: table.data }, inp["hidden_states"]!, 2, 16);
    expect(maxAbs(crop.data, exp["debug.pos_embed_crop"]!.data)).toBe(0);
    const proj = K.timestepEmbedding(inp["timestep"]!, 256, true, 0, 10000);
    // torch's float32 exp may differ from the correctly rounded one by an ulp of f, which moves t f
    // by up to one float32 ulp at t = 800 (2^-14 = 6.1e-5), and sin or cos with it.
    expect(maxAbs(proj.data, exp["debug.timestep_proj"]!.data)).toBeLessThan(2 ** -14);
  });

  it("the DDPM schedule's sqrt(abar_t) and sqrt(1 - abar_t) are diffusers' (t = 300, 800)", () => {
    const { sqrtAlpha, sqrtOneMinus } = ddpmSchedule();
    const t = inp["ddpm_timesteps"]!.data;
    t.forEach((v, i) => {
      expect(Math.abs(sqrtAlpha[v]! - inp["ddpm_sqrt_alpha_prod"]!.data[i]!)).toBeLessThan(1e-6);
      expect(Math.abs(sqrtOneMinus[v]! - inp["ddpm_sqrt_one_minus_alpha_prod"]!.data[i]!)).toBeLessThan(1e-6);
    });
  });

  it("qzo eval --json gives the three losses of each model within 1e-5 relative (flow by default, the others by --loss; the interpreter, which the CPU kernels are checked against below)", async () => {
    for (const { dir, tag } of MODELS) {
      for (const [loss, key] of [["", "loss_"], ["flow_precond", "loss_precond_"], ["ddpm", "loss_qzo_ddpm_"]] as const) {
        const r = await qzo("eval", "--model", dir, "--data", join(FX, "inputs.safetensors"), "--json", "--device", "interp", ...(loss ? ["--loss", loss] : []));
        expect(r.exitCode, r.stderr).toBe(0);
        const got = JSON.parse(r.stdout) as { loss: number; lossName: string };
        expect(got.lossName).toBe(loss || "flow");
        const want = exp[`${key}${tag}`]!.data[0]!;
        expect(Math.abs(got.loss / want - 1), `${tag} ${got.lossName}`).toBeLessThan(1e-5);
      }
    }
  }, 300_000);

  it.each(MODELS.filter((x) => x.tag === "nf4"))("$tag (float outer linears, NF4 blocks): the CPU kernels agree with the interpreter on the fixture, perturbed too", ({ dir }) => {
    const m = bindModel(dir);
    const cpu = createKernelBackend(m, "cpu", { loss: "flow", train: true, threads: 2 });
    try {
      const g = m.module.graphs.find((x) => x.name === "flow")!;
      const batch = Object.fromEntries(g.inputs.map((id) => [g.values[id]!.name!, inp[g.values[id]!.name!]!]));
      const p = { seedLo: 9, seedHi: 1, sign: 1 as const, eps: 1e-2, epsMode: "relative" as const, dist: "gaussian" as const };
      expect(Math.abs(cpu.loss(batch) / runGraph(m.module, "flow", batch, m.weights).data[0]! - 1)).toBeLessThan(1e-6);
      expect(Math.abs(cpu.loss(batch, p) / runGraph(m.module, "flow", batch, m.weights, p).data[0]! - 1)).toBeLessThan(1e-6);
      const out = new Float32Array(2 * 4 * 16 * 16);
      cpu.run("forward", forwardInputs(), out);
      expect(maxAbs(out, runGraph(m.module, "forward", forwardInputs(), m.weights).data)).toBeLessThan(1e-5);
    } finally {
      cpu.close();
    }
  }, 120_000);

  it("QZO distillation toward the F32 model lowers the NF4 model's held-out loss; the export keeps bitsandbytes' layout with only absmax changed", async () => {
    const d = tmp();
    const train = writeLatents(join(d, "train.safetensors"), 32, 11, FIXTURE_SIZE);
    const held = writeLatents(join(d, "held.safetensors"), 8, 12, FIXTURE_SIZE);
    for (const [src, out] of [[train, "t-train.safetensors"], [held, "t-held.safetensors"]]) {
      const r = await qzo("distill", "--model", FX, "--data", src!, "--out", join(d, out!), "--device", "interp");
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const evalOn = async (model: string) => {
      const r = await qzo("eval", "--model", model, "--data", join(d, "t-held.safetensors"), "--json", "--device", "interp");
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { loss: number; lossName: string };
    };
    expect(await evalOn(FX)).toEqual({ loss: 0, lossName: "distill", examples: 8 });
    const before = (await evalOn(join(FX, "nf4"))).loss;
    const t = await qzo("train", "--model", join(FX, "nf4"), "--data", join(d, "t-train.safetensors"), "--eval", join(d, "t-held.safetensors"), "--out", join(d, "run"), "--steps", "1500", "--device", "cpu");
    expect(t.exitCode, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/loss distill, 1500 steps/);
    const after = (await evalOn(join(d, "run", "model"))).loss;
    expect(after).toBeLessThan(0.95 * before);
    // The export: the same tensors, dtypes and shapes; codes, quant_map, quant_state and every float tensor byte for byte; absmax changed.
    const a = readSafetensors(join(FX, "nf4", "diffusion_pytorch_model.safetensors"));
    const b = readSafetensors(join(d, "run", "model", "diffusion_pytorch_model.safetensors"));
    expect([...b.tensors.keys()].sort()).toEqual([...a.tensors.keys()].sort());
    let changed = 0;
    for (const [name, info] of a.tensors) {
      const other = b.tensors.get(name)!;
      expect([other.dtype, other.shape]).toEqual([info.dtype, info.shape]);
      const same = Buffer.from(a.readTensorBytes(name)).equals(Buffer.from(b.readTensorBytes(name)));
      if (name.endsWith(".weight.absmax")) changed += same ? 0 : 1;
      else expect(same, name).toBe(true);
    }
    expect(changed).toBeGreaterThan(20);
    expect(readFileSync(join(d, "run", "model", "config.json"), "utf8")).toBe(readFileSync(join(FX, "nf4", "config.json"), "utf8"));
  }, 300_000);

  it("qzo quantize --format nf4 writes what bitsandbytes writes: both NF4 copies of the fixture byte for byte (blocks only; --set outer=nf4: every linear)", async () => {
    const d = tmp();
    for (const [variant, extra] of [["nf4", []], ["nf4-all", ["--set", "outer=nf4"]]] as const) {
      const r = await qzo("quantize", "--model", FX, "--format", "nf4", ...extra, "--out", join(d, variant));
      expect(r.exitCode, r.stderr).toBe(0);
      const want = readSafetensors(join(FX, variant, "diffusion_pytorch_model.safetensors"));
      const got = readSafetensors(join(d, variant, "diffusion_pytorch_model.safetensors"));
      expect([...got.tensors.keys()].sort()).toEqual([...want.tensors.keys()].sort());
      for (const [name, info] of want.tensors) {
        const g = got.tensors.get(name)!;
        expect([g.dtype, g.shape], name).toEqual([info.dtype, info.shape]);
        expect(Buffer.from(got.readTensorBytes(name)).equals(Buffer.from(want.readTensorBytes(name))), name).toBe(true);
      }
      const cfg = JSON.parse(readFileSync(join(d, variant, "config.json"), "utf8")) as { quantization_config: { quant_method: string; llm_int8_skip_modules: string[] } };
      expect(cfg.quantization_config.quant_method).toBe("bitsandbytes");
      expect(cfg.quantization_config.llm_int8_skip_modules.length).toBe(variant === "nf4" ? 7 : 0);
    }
  }, 120_000);

  it("qzo sample takes Euler steps of the flow ODE from the seeded noise", async () => {
    const d = tmp();
    const cond = writeLatents(join(d, "cond.safetensors"), 2, 5, FIXTURE_SIZE);
    const r = await qzo("sample", "--model", FX, "--data", cond, "--out", join(d, "x.safetensors"), "--steps", "2", "--seed", "7", "--device", "interp");
    expect(r.exitCode, r.stderr).toBe(0);
    const got = tensors(join(d, "x.safetensors"))["latents"]!;
    expect(got.shape).toEqual([2, 4, 16, 16]);
    // The same two steps by hand: x <- x + (sigma_{i+1} - sigma_i) v(x, 1000 sigma_i), x = noise at sigma 1.
    const m = bindModel(FX);
    const ds = loadLatents(cond);
    const b = latentsBatch(ds, ["noise", "encoder_hidden_states", "pooled_projections"], [0, 1], 7n);
    const sig = flowSigmas(2, 3);
    expect(sig[0]).toBe(1);
    expect(sig[2]).toBe(0);
    let x = Float32Array.from(b["noise"]!.data as Float32Array);
    for (let i = 0; i < 2; i++) {
      const v = runGraph(
        m.module,
        "forward",
        {
          latents: { shape: [2, 4, 16, 16], data: x },
          encoder_hidden_states: b["encoder_hidden_states"]! as Tensor,
          pooled_projections: b["pooled_projections"]! as Tensor,
          timestep: { shape: [2], data: Float32Array.of(1000 * sig[i]!, 1000 * sig[i]!) },
        },
        m.weights,
      ).data;
      x = x.map((xv, k) => xv + (sig[i + 1]! - sig[i]!) * v[k]!);
    }
    expect(maxAbs(got.data, x)).toBe(0);
  }, 120_000);
});

describe("models/sd3.qzo at other sizes", () => {
  const sizes = [
    { name: "3 blocks, 3 heads of 8, 6 channels, non-square 12 x 20 latents", n_layers: 3, n_heads: 3, head_dim: 8, pos_max: 12, losses: ["flow", "ddpm"] },
    { name: "1 block (only the last block's kind), 2 heads of 4", n_layers: 1, n_heads: 2, head_dim: 4, pos_max: 10, losses: ["flow"] },
  ];

  it.each(sizes)("$name: the CPU kernels agree with the interpreter ($losses, perturbed) and give the interpreter's update", (size) => {
    const over = { n_layers: size.n_layers, n_heads: size.n_heads, head_dim: size.head_dim, joint_dim: 10, pooled_dim: 12, pos_max: size.pos_max, in_channels: 6, weight: "nf4", outer: "nf4" };
    const r = checkFile(join(root, "models/sd3.qzo"), over);
    expect(r.diagnostics.map((x) => x.message)).toEqual([]);
    const m = r.modules[0]!;
    const { stored } = randomModel(m, 3, { fanIn: true });
    const weights = {
      get(param: string, layer: number | undefined): ParamValue {
        const s = stored(param, layer);
        return s.kind === "float" ? { kind: "float", shape: s.shape, data: s.data } : { kind: "quant", tensor: unpack(s.packed) };
      },
    };
    const d = tmp();
    const ds = loadLatents(writeLatents(join(d, "l.safetensors"), 3, 4, { c: 6, h: 12, w: 20, L: 5, joint: 10, pooled: 12 }));
    for (const loss of size.losses) {
      const g = m.graphs.find((x) => x.name === loss)!;
      const batch = latentsBatch(ds, g.inputs.map((id) => g.values[id]!.name!), [0, 1, 2], 99n, 4);
      const cpu = createKernelBackend({ module: m, stored }, "cpu", { loss, train: true, threads: 2 });
      try {
        const p = { seedLo: 3, seedHi: 0, sign: -1 as const, eps: 2e-2, epsMode: "relative" as const, dist: "gaussian" as const };
        const want = runGraph(m, loss, batch as Record<string, Tensor>, weights, p).data[0]!;
        expect(Math.abs(cpu.loss(batch, p) / want - 1), loss).toBeLessThan(2e-6);
        if (loss === "flow") {
          const u = { seedLo: 3, seedHi: 0, d: 0.7, lr: 1e-2, epsMode: "relative" as const, dist: "gaussian" as const, floor: 1e-7 };
          const expected = cpu.values().map((v) => Float32Array.from(v));
          cpu.update(u);
          expected.forEach((v, t) => applyUpdate(v, t, u.seedLo, u.seedHi, u.d, u.lr, u.dist, u.epsMode, u.floor));
          // Gaussian z agree within a float32 ulp across libms (rng/direction.ts).
          cpu.values().forEach((v, t) => expect(maxAbs(v, expected[t]!)).toBeLessThan(1e-6 * Math.max(...expected[t]!.map(Math.abs))));
        }
      } finally {
        cpu.close();
      }
    }
  }, 180_000);
});

describe("bad latent data", () => {
  it("a latent file without x0, and a --loss the spec does not have, are one line and exit code 1 or 2", async () => {
    if (!haveFixture) return;
    const d = tmp();
    writeSafetensors(join(d, "bad.safetensors"), [{ name: "pooled_projections", dtype: "F32", shape: [1, 20], data: new Uint8Array(80) }]);
    const r = await qzo("eval", "--model", FX, "--data", join(d, "bad.safetensors"), "--json");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/bad\.safetensors: no tensor 'x0'/);
    const l = await qzo("eval", "--model", FX, "--data", join(FX, "inputs.safetensors"), "--loss", "nope");
    expect(l.exitCode).toBe(2);
    expect(l.stderr).toMatch(/no loss 'nope' \(losses: flow, flow_precond, ddpm, distill\)/);
    writeFileSync(join(d, "text.txt"), "Once upon a time");
    const s = await qzo("sample", "--model", join(root, "models/weights/stories260K/stories260K-q4_0.gguf"), "--data", join(d, "bad.safetensors"), "--out", join(d, "x.safetensors"));
    expect(s.exitCode).toBe(2);
    expect(s.stderr).toMatch(/not a diffusion model/);
  }, 120_000);
});
