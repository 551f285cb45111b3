/**
 * A training run cannot lose data or silently continue a different run: one trainer per run
 * directory, SIGTERM handled like Ctrl-C, what a killed run left recovered or cleaned, a torn last
 * log line tolerated, --resume refusing other data or settings (unless --allow-changes) and a
 * checkpoint with non-finite values, a diverged run failing in one line, a dangling --out link
 * refused. Built CLI, stories260K Q4_0, tiny runs.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { readSafetensors } from "../../src/runtime/model-files/safetensors.js";
import { writeSafetensors } from "../../src/runtime/model-files/safetensors-write.js";

const root = new URL("../../", import.meta.url).pathname;
const Q4 = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const CLI = `${root}dist/src/cli/qzo.js`;
const qzo = (...args: string[]) => execa("node", [CLI, ...args], { reject: false, cwd: root });
const tmp = () => mkdtempSync(join(tmpdir(), "qzo-safety-"));
const SMALL = ["--batch", "2", "--seq-len", "24", "--relative-eps", "--eps", "1e-2", "--lr", "1e-3"];

function dataFile(text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."): string {
  const f = join(tmp(), "stories.txt");
  writeFileSync(f, Array.from({ length: 6 }, (_, i) => `${text} Story ${i}.`).join("\n\n") + "\n");
  return f;
}

/** The error is the last line of stderr, one line, with no stack trace before it (progress and notes may precede it). */
const oneLine = (r: { stderr: string }) => {
  const lines = r.stderr.trim().split("\n");
  expect(lines.some((l) => /^\s+at /.test(l)), r.stderr).toBe(false);
  expect(lines[lines.length - 1]!, r.stderr).toMatch(/^qzo: \//);
};

/** A finished 2-step run (scales, best, log, run.json), to resume or damage. */
async function finishedRun(): Promise<{ run: string; data: string }> {
  const data = dataFile();
  const run = join(tmp(), "run");
  const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "2", ...SMALL);
  expect(r.exitCode, r.stderr).toBe(0);
  return { run, data };
}

describe("a run directory cannot lose data", () => {
  it("one trainer at a time: a live lock holder refuses a second; a dead one's lock is taken over", async () => {
    const data = dataFile();
    const run = join(tmp(), "run");
    mkdirSync(run);
    writeFileSync(join(run, ".lock"), `${process.pid}\n`);
    const busy = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "1", ...SMALL);
    expect(busy.exitCode).toBe(2);
    oneLine(busy);
    expect(busy.stderr).toContain(`another qzo train (pid ${process.pid}) is using this run directory`);
    writeFileSync(join(run, ".lock"), "2147483646\n");
    const ok = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "1", ...SMALL);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(existsSync(join(run, ".lock"))).toBe(false);
  }, 60_000);

  it("SIGTERM finishes the step and saves like Ctrl-C (exit 130, run.json interrupted)", async () => {
    const data = dataFile();
    const run = join(tmp(), "run");
    const child = execa("node", [CLI, "train", "--model", Q4, "--data", data, "--out", run, "--steps", "5000", "--eval-every", "1000", ...SMALL], { reject: false, cwd: root });
    const t0 = Date.now();
    while (!(existsSync(join(run, "log.jsonl")) && readFileSync(join(run, "log.jsonl"), "utf8").split("\n").length > 3) && Date.now() - t0 < 30_000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill("SIGTERM");
    const r = await child;
    expect(r.exitCode, r.stderr).toBe(130);
    expect(r.stderr).toContain("terminated: finishing the current step and saving");
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8")).status).toBe("interrupted");
    expect(existsSync(join(run, "scales.safetensors"))).toBe(true);
    expect(existsSync(join(run, ".lock"))).toBe(false);
  }, 60_000);

  it("a complete checkpoint left under its temporary name is resumed from; other leftovers are removed", async () => {
    const { run, data } = await finishedRun();
    const scales = join(run, "scales.safetensors");
    cpSync(scales, join(run, "scales.safetensors.tmp-2147483646-1"));
    writeFileSync(join(run, ".model.gguf.tmp-2147483646-2"), "half an export");
    cpSync(scales, join(run, "keep.safetensors"));
    // The kill came before the rename of the first checkpoint: no scales.safetensors.
    rmSync(scales);
    const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--resume", "--steps", "3");
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain("recovered scales.safetensors from scales.safetensors.tmp-2147483646-1");
    expect(r.stderr).toContain("removed .model.gguf.tmp-2147483646-2");
    expect(readdirSync(run).filter((f) => f.includes(".tmp-"))).toEqual([]);
    // qzo export removes what a killed export of the same file left beside it.
    const out = join(tmp(), "exported.gguf");
    writeFileSync(join(out, "..", ".exported.gguf.tmp-2147483646-3"), "half");
    const e = await qzo("export", "--model", Q4, "--checkpoint", join(run, "scales.safetensors"), "--out", out);
    expect(e.exitCode, e.stderr).toBe(0);
    expect(readdirSync(join(out, "..")).sort()).toEqual(["exported.gguf"]);
  }, 90_000);

  it("a fresh start refuses a directory holding any run file; a torn last log line does not block --resume", async () => {
    const { run, data } = await finishedRun();
    const other = join(tmp(), "run");
    mkdirSync(other);
    cpSync(join(run, "log.jsonl"), join(other, "log.jsonl"));
    const fresh = await qzo("train", "--model", Q4, "--data", data, "--out", other, "--steps", "1", ...SMALL);
    expect(fresh.exitCode).toBe(2);
    oneLine(fresh);
    expect(fresh.stderr).toContain("already holds a run (log.jsonl)");
    writeFileSync(join(run, "log.jsonl"), readFileSync(join(run, "log.jsonl"), "utf8") + '{"step": 2, "seed": "0x12');
    const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--resume", "--steps", "3");
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = readFileSync(join(run, "log.jsonl"), "utf8").trim().split("\n");
    expect(lines.every((l) => JSON.parse(l))).toBeTruthy();
  }, 90_000);

  it("--resume refuses other data and other settings unless --allow-changes, and a checkpoint holding NaN", async () => {
    const { run, data } = await finishedRun();
    const other = dataFile("Tom and Sue went to the shop to buy some milk.");
    const d = await qzo("train", "--model", Q4, "--data", other, "--out", run, "--resume", "--steps", "3");
    expect(d.exitCode).toBe(2);
    oneLine(d);
    expect(d.stderr).toContain("the run was trained on other data");
    const lr = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--resume", "--steps", "3", "--lr", "5e-3");
    expect(lr.exitCode).toBe(2);
    expect(lr.stderr).toContain("the run has lr 0.001, not 0.005");
    const ok = await qzo("train", "--model", Q4, "--data", other, "--out", run, "--resume", "--steps", "3", "--allow-changes");
    expect(ok.exitCode, ok.stderr).toBe(0);

    const scales = join(run, "scales.safetensors");
    const st = readSafetensors(scales);
    const tensors = [...st.tensors.values()].map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: Uint8Array.from(st.readTensorBytes(t.name)) }));
    new DataView(tensors[0]!.data.buffer).setFloat32(0, Number.NaN, true);
    writeSafetensors(scales, tensors, st.metadata);
    const nan = await qzo("train", "--model", Q4, "--data", other, "--out", run, "--resume", "--steps", "4", "--allow-changes");
    expect(nan.exitCode).toBe(1);
    oneLine(nan);
    expect(nan.stderr).toMatch(/value 0 is NaN: expected finite scales/);
  }, 120_000);

  it("a run whose losses are not finite fails in one line and exports nothing; a dangling --out link is refused", async () => {
    const data = dataFile();
    const run = join(tmp(), "run");
    const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "3", "--batch", "2", "--seq-len", "24", "--absolute-eps", "--eps", "1e30");
    expect(r.exitCode).toBe(1);
    oneLine(r);
    expect(r.stderr).toMatch(/: (\d+) of \1 directions were skipped because a loss was not finite: the run diverged and is not exported/);
    expect(existsSync(join(run, "model.gguf"))).toBe(false);
    expect(JSON.parse(readFileSync(join(run, "run.json"), "utf8")).status).toBe("diverged");

    const link = join(tmp(), "out");
    symlinkSync(join(tmp(), "gone", "nowhere"), link);
    const l = await qzo("train", "--model", Q4, "--data", data, "--out", link, "--steps", "1", ...SMALL);
    expect(l.exitCode).toBe(2);
    oneLine(l);
    expect(l.stderr).toContain("a link to a directory that does not exist");
  }, 60_000);

  it("an --out that is a file, not a directory, is a usage error in one line", async () => {
    const file = join(tmp(), "run");
    writeFileSync(file, "not a run\n");
    const r = await qzo("train", "--model", Q4, "--data", dataFile(), "--out", file, "--steps", "1", ...SMALL);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(`qzo: ${file}: exists and is not a directory`);
    expect(readFileSync(file, "utf8")).toBe("not a run\n");
  });
});
