/**
 * Pictures of a training run from its directory: the loss chart (RUN_DIR/loss.svg, written by every
 * run) and a self-contained HTML page (`qzo report RUN`): the settings, the chart, and the table of
 * results. Both are made from run.json and log.jsonl alone.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { QzoError } from "../../util/errors.js";
import { writeFileAtomic } from "../../util/fs-atomic.js";
import { LOG_FILE, parseLog } from "../train/trainer.js";
import { RUN_FILE } from "../train/run-dir.js";
import { esc, lossChart, type ChartData } from "./chart.js";

export const CHART_FILE = "loss.svg";
export const REPORT_FILE = "report.html";

interface RunRecord {
  run: Record<string, unknown>;
  train: [number, number][];
  eval: [number, number][];
  seconds: number;
}

function readRun(dir: string): RunRecord {
  const runPath = join(dir, RUN_FILE);
  const logPath = join(dir, LOG_FILE);
  if (!existsSync(runPath) || !existsSync(logPath)) throw new QzoError(`${dir}: not a run directory (expected ${RUN_FILE} and ${LOG_FILE})`);
  let run: Record<string, unknown>;
  try {
    run = JSON.parse(readFileSync(runPath, "utf8")) as Record<string, unknown>;
  } catch {
    throw new QzoError(`${runPath}: not valid JSON`);
  }
  const train: [number, number][] = [];
  const evals: [number, number][] = [];
  let seconds = 0;
  for (const r of parseLog(readFileSync(logPath, "utf8"), logPath)) {
    if ("eval_loss" in r) evals.push([r.step, r.eval_loss]);
    else if ("loss_plus" in r) {
      const lp = ([] as number[]).concat(r.loss_plus);
      const lm = ([] as number[]).concat(r.loss_minus);
      const all = [...lp, ...lm];
      train.push([r.step + 1, all.reduce((a, v) => a + v, 0) / all.length]);
      seconds += r.seconds;
    }
  }
  return { run, train, eval: evals, seconds };
}

function chartData(dir: string, r: RunRecord): ChartData {
  const hyper = (r.run["hyper"] ?? {}) as Record<string, unknown>;
  const refs = (r.run["references"] ?? {}) as Record<string, number>;
  const start = r.eval.find((e) => e[0] === 0);
  return {
    title: `${basename(String(r.run["model"] ?? dir))}: ${String(r.run["loss"] ?? "loss")}, ${String(hyper["steps"] ?? "?")} steps`,
    train: r.train,
    eval: r.eval,
    references: [
      ...(start ? [{ label: "before training", value: start[1] }] : []),
      ...Object.entries(refs).filter(([, v]) => typeof v === "number" && Number.isFinite(v)).map(([label, value]) => ({ label, value })),
    ],
    steps: Number(hyper["steps"] ?? r.train.length),
  };
}

/** Writes RUN_DIR/loss.svg from the run's log; returns its path. */
export function writeLossChart(dir: string): string {
  const path = join(dir, CHART_FILE);
  writeFileAtomic(path, lossChart(chartData(dir, readRun(dir))));
  return path;
}

/** The report page of a run directory, with its chart (`svg`) inline. */
function reportHtml(dir: string, r: RunRecord, data: ChartData, svg: string): string {
  const hyper = (r.run["hyper"] ?? {}) as Record<string, unknown>;
  const result = (r.run["result"] ?? {}) as Record<string, unknown>;
  const best = result["best"] as { step: number; evalLoss: number } | null | undefined;
  const start = r.eval.find((e) => e[0] === 0)?.[1];
  const fmt = (v: unknown) => (typeof v === "number" ? String(Number(v.toPrecision(6))) : v === null || v === undefined ? "-" : String(v));
  const rows = (o: Record<string, unknown>) => Object.entries(o).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(fmt(v))}</td></tr>`).join("\n");
  const settings = {
    model: r.run["model"], spec: r.run["spec"], data: r.run["data"], "eval data": r.run["eval"] ?? `held out: ${fmt(r.run["heldOut"])} examples`,
    loss: r.run["loss"], backend: r.run["backend"], "trainable values": r.run["scales"], "sequence length": r.run["seqLen"], ...hyper,
  };
  const results = {
    status: r.run["status"], steps: result["step"] ?? r.train.length, "eval loss before training": start, "best eval loss": best?.evalLoss,
    "best at step": best?.step, "last eval loss": result["lastEval"], "skipped directions": result["skipped"], "training time (s)": Number(r.seconds.toFixed(1)),
    exported: r.run["exported"], "exported from": r.run["exportedFrom"],
    ...Object.fromEntries(data.references.filter((x) => x.label !== "before training").map((x) => [x.label, x.value])),
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qzo run: ${esc(data.title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0 2em; }
th, td { text-align: left; padding: 4px 12px; border-bottom: 1px solid #ddd; vertical-align: top; }
th { font-weight: 600; color: #444; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
</style></head>
<body>
<h1>QZO run: ${esc(data.title)}</h1>
<h2>Loss</h2>
${svg}
<h2>Results</h2>
<table>
${rows(results)}
</table>
<h2>Settings</h2>
<table>
${rows(settings)}
</table>
<p>Made by <code>qzo report</code> from ${esc(RUN_FILE)} and ${esc(LOG_FILE)} in ${esc(dir)}.</p>
</body></html>
`;
}

/** Writes the report page (default RUN_DIR/report.html) and RUN_DIR/loss.svg; returns the page's path. */
export function writeReport(dir: string, out = join(dir, REPORT_FILE)): string {
  const r = readRun(dir);
  const data = chartData(dir, r);
  const svg = lossChart(data);
  writeFileAtomic(join(dir, CHART_FILE), svg);
  writeFileAtomic(out, reportHtml(dir, r, data, svg));
  return out;
}
