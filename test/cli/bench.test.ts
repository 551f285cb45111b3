/**
 * `qzo bench` end to end at its smoke-test sizes (--quick): one JSON object whose every ratio is
 * measured in the run (to the roofline, to the unfused baseline, to llama.cpp), whose fused and
 * unfused QZO steps compute the same losses, and whose text table shows the same numbers; a
 * missing GPU or a bad flag is one line. Speed itself is never asserted (bench/ records it).
 */
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { cudaAvailable } from "../../src/runtime/backends/cuda-device.js";
import type { BenchReport } from "../../src/runtime/bench/suite.js";
import { formatBench } from "../../src/runtime/bench/table.js";

const root = new URL("../../", import.meta.url).pathname;
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });
const positive = (x: number) => Number.isFinite(x) && x > 0;

describe("qzo bench", () => {
  it("--quick --json: the roofline, the fused matmul and QZO step against the unfused ones, the forward against llama.cpp", async () => {
    const r = await qzo("bench", "--quick", "--json", "--threads", "2");
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BenchReport;
    expect(report.device).toBe("cpu");
    expect(report.threads).toBe(2);
    expect(report.machine.cpu.length).toBeGreaterThan(0);
    expect(report.roofline.bandwidth).toBeGreaterThan(1e8);
    expect(report.roofline.flops).toBeGreaterThan(1e8);
    expect(report.matmul.rows.map((x) => x.m)).toEqual([1, 16]);
    for (const row of report.matmul.rows) {
      for (const v of [row.fusedMs, row.unfusedMs, row.rooflineMs, row.unfusedOverFused]) expect(positive(v), JSON.stringify(row)).toBe(true);
      // Fractions of the roofline are rounded in the report: a slow run on a busy machine rounds to 0.
      for (const v of [row.fusedOfRoofline, row.unfusedOfRoofline]) expect(Number.isFinite(v) && v >= 0 && v <= 1, JSON.stringify(row)).toBe(true);
      // The ratio is of the unrounded times, which lie within 0.0005 ms of the reported ones; the
      // ratio itself is rounded to 0.01.
      const h = 0.0005;
      const lo = (row.unfusedMs - h) / (row.fusedMs + h) - 0.005;
      const hi = row.fusedMs > h ? (row.unfusedMs + h) / (row.fusedMs - h) + 0.005 : Infinity;
      expect(row.unfusedOverFused >= lo && row.unfusedOverFused <= hi, JSON.stringify(row)).toBe(true);
    }
    const s = report.step;
    expect(s.model).toMatch(/stories260K/);
    expect(positive(s.fusedMs) && positive(s.unfusedMs) && positive(s.unfusedOverFused)).toBe(true);
    // Same seed, same scales: the perturbed loss inside the kernels equals the loss after an in-place sweep.
    expect(s.first.relDiff).toBeLessThan(1e-5);
    expect(s.first.fused.d).toBeCloseTo(s.first.unfused.d, 1);
    expect(s.restoreMaxRel).toBeLessThan(1e-5);
    const f = report.forward!;
    expect(f.tokens).toBe(128);
    expect(positive(f.oursMs)).toBe(true);
    expect(f.llamaCppSkipped).toBeUndefined();
    expect(positive(f.llamaCpp!.ms) && positive(f.llamaCpp!.oursOverLlamaCpp)).toBe(true);

    const text = formatBench(report);
    expect(text).toContain(`${report.matmul.rows[1]!.unfusedOverFused.toFixed(2)}x`);
    expect(text).toContain(`qzo/llama.cpp throughput ${f.llamaCpp!.oursOverLlamaCpp.toFixed(2)}x`);
  }, 240_000);

  it.skipIf(cudaAvailable().ok)("--device cuda without a GPU is one line and exit code 1", async () => {
    const r = await qzo("bench", "--device", "cuda", "--quick");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^qzo: .*(CUDA|nvcc)/);
  });

  it("bad flags are usage errors (exit code 2)", async () => {
    for (const args of [["--steps", "0"], ["--device", "tpu"], ["--threads", "x"]]) {
      const r = await qzo("bench", ...args);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("a --spec without the lm loss it times is one line naming the spec", async () => {
    const r = await qzo("bench", "--quick", "--no-forward", "--spec", "models/bench/matmul.qzo");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.split("\n").filter((l) => !l.startsWith("qzo bench: "))).toEqual([
      "qzo: models/bench/matmul.qzo: qzo bench times the 'lm' loss (next-token cross-entropy over tokens and a mask), and this spec has no graph 'lm'",
    ]);
  }, 120_000);
});
