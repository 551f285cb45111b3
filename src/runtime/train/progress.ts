/**
 * The trainer's progress display on stderr: step/steps, the step's loss (mean of L+ and L-), the last
 * eval loss, it/s and ETA. On a TTY one line is redrawn in place with \r; otherwise (a pipe, a log file)
 * a plain line is written every `every` steps, on the first and on the last step.
 */

export interface ProgressSink {
  isTTY?: boolean;
  write(s: string): unknown;
}

export interface ProgressState {
  /** Steps completed so far. */
  step: number;
  steps: number;
  loss?: number;
  evalLoss?: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

export class Progress {
  private readonly sink: ProgressSink;
  private readonly every: number;
  private readonly tty: boolean;
  private readonly started: number;
  private readonly firstStep: number;
  private readonly now: () => number;
  private lastLen = 0;
  private evalLoss: number | undefined;
  private drawn = false;

  /** `firstStep`: the step the run (re)started at, so it/s counts only this process's steps. */
  constructor(opts: { sink?: ProgressSink; every?: number; firstStep?: number; steps: number; now?: () => number }) {
    this.sink = opts.sink ?? process.stderr;
    this.tty = this.sink.isTTY === true;
    this.every = opts.every ?? Math.max(1, Math.round(opts.steps / 20));
    this.now = opts.now ?? (() => performance.now() / 1000);
    this.started = this.now();
    this.firstStep = opts.firstStep ?? 0;
  }

  line(s: ProgressState): string {
    if (s.evalLoss !== undefined) this.evalLoss = s.evalLoss;
    const elapsed = this.now() - this.started;
    const done = s.step - this.firstStep;
    const rate = elapsed > 0 && done > 0 ? done / elapsed : NaN;
    const eta = rate > 0 ? (s.steps - s.step) / rate : NaN;
    const parts = [`step ${s.step}/${s.steps}`];
    if (s.loss !== undefined) parts.push(`loss ${fmt(s.loss)}`);
    if (this.evalLoss !== undefined) parts.push(`eval ${fmt(this.evalLoss)}`);
    parts.push(Number.isFinite(rate) ? `${rate >= 10 ? rate.toFixed(1) : rate.toPrecision(3)} it/s` : "- it/s");
    parts.push(`ETA ${formatDuration(eta)}`);
    return parts.join("  ");
  }

  /** Reports a state; draws according to the sink's kind. */
  update(s: ProgressState): void {
    const text = this.line(s);
    if (this.tty) {
      const pad = this.lastLen > text.length ? " ".repeat(this.lastLen - text.length) : "";
      this.sink.write(`\r${text}${pad}`);
      this.lastLen = text.length;
      this.drawn = true;
      return;
    }
    const n = s.step - this.firstStep;
    if (n === 1 || s.step === s.steps || s.step % this.every === 0 || s.evalLoss !== undefined) this.sink.write(text + "\n");
  }

  /** A message on its own line (ends a redrawn TTY line first). */
  message(text: string): void {
    this.finish();
    this.sink.write(text + "\n");
  }

  /** Ends the redrawn line on a TTY. */
  finish(): void {
    if (this.tty && this.drawn) {
      this.sink.write("\n");
      this.drawn = false;
      this.lastLen = 0;
    }
  }
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(4) : String(x);
}
