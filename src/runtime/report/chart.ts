/**
 * A loss chart as a self-contained SVG (no scripts, no external resources): the training loss per
 * step (the mean of L+ and L-, light) with its moving average, the evaluation losses, and
 * horizontal reference lines (the loss before training, and any the run records), over steps.
 */

export interface ChartData {
  title: string;
  /** [step, loss] per training step. */
  train: [number, number][];
  /** [step, loss] per evaluation. */
  eval: [number, number][];
  references: { label: string; value: number }[];
  steps: number;
}

const W = 820;
const H = 440;
const M = { left: 72, right: 190, top: 44, bottom: 52 };
const COLORS = { raw: "#c9d3e0", avg: "#1f5fa8", eval: "#d2531d", ref: ["#3a8d3a", "#7b4ea3", "#8a6d1f", "#555555"] };

/** Text safe inside XML and HTML elements and attribute values. */
export const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** About n round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, n: number): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Means of consecutive buckets, so that a long run draws at most `max` points. */
function thin(points: [number, number][], max: number): [number, number][] {
  if (points.length <= max) return points;
  const k = Math.ceil(points.length / max);
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i += k) {
    const b = points.slice(i, i + k);
    out.push([b.reduce((a, p) => a + p[0], 0) / b.length, b.reduce((a, p) => a + p[1], 0) / b.length]);
  }
  return out;
}

/** A trailing moving average over `w` points. */
function movingAverage(points: [number, number][], w: number): [number, number][] {
  let sum = 0;
  return points.map((p, i) => {
    sum += p[1];
    if (i >= w) sum -= points[i - w]![1];
    return [p[0], sum / Math.min(i + 1, w)];
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))]!;
}

export function lossChart(d: ChartData): string {
  const train = d.train.filter((p) => Number.isFinite(p[1]));
  const evals = d.eval.filter((p) => Number.isFinite(p[1]));
  const avg = movingAverage(train, Math.max(5, Math.round(train.length / 50)));
  // The y range: the averages, the evaluations, the references, and the bulk of the raw losses.
  const sorted = train.map((p) => p[1]).sort((a, b) => a - b);
  const ys = [...avg.map((p) => p[1]), ...evals.map((p) => p[1]), ...d.references.map((r) => r.value)];
  if (sorted.length) ys.push(quantile(sorted, 0.02), quantile(sorted, 0.98));
  let lo = ys.length ? Math.min(...ys) : 0;
  let hi = ys.length ? Math.max(...ys) : 1;
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.06;
  lo -= pad;
  hi += pad;
  const xMax = Math.max(1, d.steps, ...train.map((p) => p[0]), ...evals.map((p) => p[0]));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (s: number) => M.left + (s / xMax) * pw;
  const y = (v: number) => M.top + (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo)) * ph;
  const path = (pts: [number, number][]) => pts.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${M.left}" y="24" font-size="15" font-weight="bold">${esc(d.title)}</text>`,
  ];
  for (const t of ticks(lo, hi, 6)) {
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#eeeeee"/>`);
    out.push(`<text x="${M.left - 8}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`);
  }
  for (const t of ticks(0, xMax, 8)) {
    out.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${M.top + ph}" y2="${M.top + ph + 5}" stroke="#333333"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${M.top + ph + 19}" text-anchor="middle">${t}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 12}" text-anchor="middle">step</text>`);
  out.push(`<text transform="translate(18,${M.top + ph / 2}) rotate(-90)" text-anchor="middle">loss (nats/token)</text>`);
  const legend: { color: string; label: string; dash?: boolean }[] = [];
  if (train.length) {
    out.push(`<path d="${path(thin(train, 1200))}" fill="none" stroke="${COLORS.raw}" stroke-width="1"/>`);
    out.push(`<path d="${path(thin(avg, 1200))}" fill="none" stroke="${COLORS.avg}" stroke-width="2"/>`);
    legend.push({ color: COLORS.raw, label: "train loss (step)" }, { color: COLORS.avg, label: "train loss (average)" });
  }
  d.references.forEach((r, i) => {
    const color = COLORS.ref[i % COLORS.ref.length]!;
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y(r.value).toFixed(1)}" y2="${y(r.value).toFixed(1)}" stroke="${color}" stroke-dasharray="6 4" stroke-width="1.5"/>`);
    legend.push({ color, label: `${r.label} ${r.value.toFixed(4)}`, dash: true });
  });
  if (evals.length) {
    out.push(`<path d="${path(evals)}" fill="none" stroke="${COLORS.eval}" stroke-width="2"/>`);
    for (const p of evals) out.push(`<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="3" fill="${COLORS.eval}"/>`);
    legend.push({ color: COLORS.eval, label: "eval loss" });
  }
  legend.forEach((l, i) => {
    const ly = M.top + 10 + i * 20;
    const lx = M.left + pw + 14;
    out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${l.color}" stroke-width="2"${l.dash ? ' stroke-dasharray="6 4"' : ""}/>`);
    out.push(`<text x="${lx + 28}" y="${ly + 4}">${esc(l.label)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
