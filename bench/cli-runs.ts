/**
 * What the training benchmarks share: their models (each a Q4_0 GGUF and its F32 original) and
 * texts, running the built `qzo` CLI on one thread, scoring a model's held-out loss with it, and
 * running jobs two at a time (two cores, one thread each).
 */
import { join } from "node:path";
import { execa } from "execa";
import { packageRoot } from "../src/util/package-root.js";

const root = packageRoot();
const CLI = join(root, "dist", "src", "cli", "qzo.js");
const SHARED = join(root, "..", "shared", "models", "gguf");

/** stories260K (bundled) and babyllama (the shared test models, beside the repository). */
export const MODELS: { name: string; q4: string; f32: string }[] = [
  { name: "stories260K", q4: join(root, "models/weights/stories260K/stories260K-q4_0.gguf"), f32: join(root, "models/weights/stories260K/stories260K-f32.gguf") },
  { name: "babyllama", q4: join(SHARED, "babyllama-tok105-q4_0.gguf"), f32: join(SHARED, "babyllama-tok105-f32.gguf") },
];

/** The text stories260K's F32 model wrote: training stories, and 64 held-out ones. */
export const TEXT = join(root, "data", "stories260K-self", "train.txt");
export const HELD = join(root, "data", "stories260K-self", "eval.txt");

/** `qzo ARGS` on one thread; its stdout, or an Error with the end of its stderr. */
export async function qzo(args: string[]): Promise<string> {
  const r = await execa("node", [CLI, ...args], { reject: false, env: { QZO_THREADS: "1" } });
  if (r.exitCode !== 0) throw new Error(`qzo ${args.join(" ")}: ${r.stderr.slice(-800)}`);
  return r.stdout;
}

/** The language-modelling loss (nats per token) on HELD of a model, or of its scales checkpoint. */
export async function heldOutLoss(model: string, checkpoint?: string): Promise<number> {
  const ck = checkpoint ? ["--checkpoint", checkpoint] : [];
  return (JSON.parse(await qzo(["eval", "--model", model, ...ck, "--data", HELD, "--json", "--device", "cpu"])) as { loss: number }).loss;
}

/** Runs jobs `width` at a time; their results in job order. */
export async function pool<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]!();
      }
    }),
  );
  return out;
}
