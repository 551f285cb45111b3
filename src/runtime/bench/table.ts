/** `qzo bench`'s report as text tables (the JSON is the report object itself), and its record. */
import { join } from "node:path";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import type { BenchReport } from "./suite.js";

const ms = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 3 : 1)} ms`);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const int = (x: number) => x.toLocaleString("en-US");

function table(head: string[], rows: string[][]): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)];
}

export function formatBench(r: BenchReport): string {
  const mc = r.machine;
  const L: string[] = [];
  L.push(`qzo bench on ${r.device.toUpperCase()}: ${mc.gpu ? `${mc.gpu}; ` : ""}${mc.cpu}, ${mc.cores} cores, ${r.threads} thread(s); ${mc.node}, ${mc.gxx}; ${mc.date.slice(0, 10)}`);
  L.push(`roofline: ${(r.roofline.bandwidth / 1e9).toFixed(1)} GB/s, ${(r.roofline.flops / 1e9).toFixed(1)} GFLOP/s (${r.roofline.method})`, "");
  const mm = r.matmul;
  L.push(`fused dequantize-matmul, ${mm.format} [${mm.n} x ${mm.k}], evaluated at perturbed scales (median of ${mm.reps}); roofline = time to move the packed weight, x and y once or to do 2 M N K FLOPs at the peak`);
  L.push(
    ...table(
      ["M", "fused", "fused, unperturbed", "unfused", "unfused/fused", "roofline", "fused of roofline", "unfused of roofline", "fused GFLOP/s"],
      mm.rows.map((x) => [String(x.m), ms(x.fusedMs), ms(x.fusedPlainMs), ms(x.unfusedMs), `${x.unfusedOverFused.toFixed(2)}x`, ms(x.rooflineMs), pct(x.fusedOfRoofline), pct(x.unfusedOfRoofline), int(x.fusedGflops)]),
    ),
    "",
  );
  const s = r.step;
  L.push(`one QZO step of ${s.model}, batch ${s.batch[0]} x ${s.batch[1]}, ${int(s.trainable)} trainable scales (median of ${s.steps})`);
  L.push(
    ...table(["variant", "step", "tokens/s"], [
      ["fused", ms(s.fusedMs), int(s.fusedTokensPerS)],
      ["unfused", ms(s.unfusedMs), int(Math.round((s.batch[0] * s.batch[1]) / (s.unfusedMs / 1000)))],
    ]),
  );
  L.push(`unfused/fused ${s.unfusedOverFused.toFixed(2)}x; first step's L+ fused ${s.first.fused.lp.toFixed(6)}, unfused ${s.first.unfused.lp.toFixed(6)} (relative difference ${s.first.relDiff.toExponential(1)}); unfused restore error ${s.restoreMaxRel.toExponential(1)} (relative)`, "");
  const f = r.forward;
  if (f) {
    L.push(`forward of ${f.tokens} tokens in one batch, ${f.model}, ${(f.parameters / 1e6).toFixed(1)}M parameters, ${f.threads} thread(s) (median of ${f.reps})`);
    const rows = [["qzo (generated C++)", ms(f.oursMs), int(Math.round(f.tokens / (f.oursMs / 1000))), int(f.oursGflops)]];
    if (f.llamaCpp) rows.push([`llama.cpp ${f.llamaCpp.release}`, ms(f.llamaCpp.ms), int(Math.round(f.tokens / (f.llamaCpp.ms / 1000))), int(f.llamaCpp.gflops)]);
    L.push(...table(["engine", "forward", "tokens/s", "GFLOP/s"], rows));
    L.push(f.llamaCpp ? `qzo/llama.cpp throughput ${f.llamaCpp.oursOverLlamaCpp.toFixed(2)}x; qzo at ${pct(f.oursOfPeak)} of the FLOP peak` : `llama.cpp: skipped (${f.llamaCppSkipped})`);
  } else L.push(`forward comparison with llama.cpp: skipped (${r.forwardSkipped})`);
  L.push("", `${r.seconds} s in all`);
  return L.join("\n") + "\n";
}

/** Writes the report as DIR/qzo-bench-<device>-<date>.json and .txt (atomically); returns the paths. */
export function recordBench(dir: string, r: BenchReport, text: string): string[] {
  const stem = join(dir, `qzo-bench-${r.device}-${r.machine.date.slice(0, 10)}`);
  writeFileAtomic(`${stem}.json`, JSON.stringify(r, null, 2) + "\n");
  writeFileAtomic(`${stem}.txt`, text);
  return [`${stem}.json`, `${stem}.txt`];
}
