/**
 * The QZO trainer over two ranks in one process (test/support/local-world), on stories260K Q4_0 with
 * the reference interpreter: every step's L+ and L- are the whole batch's, as one process computes
 * them at the same scales, up to the rounding of each shard's loss to float32; rank 0's log replays
 * to its scales bit for bit; a stop asked of one rank stops both after the same step; a resumed
 * two-rank run equals an uninterrupted one; rank 1 writes nothing.
 */
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { createInterpreterBackend } from "../../src/runtime/backends/interp-backend.js";
import { batchOrder, loadDataset, type Dataset } from "../../src/runtime/data/dataset.js";
import { bindModel } from "../../src/runtime/load/bind.js";
import { modelTokenizer } from "../../src/runtime/load/tokenizer.js";
import { CollectiveError, type Communicator } from "../../src/runtime/parallel/communicator.js";
import { loadScalesCheckpoint } from "../../src/runtime/train/checkpoint.js";
import { datasetData, parseLog, parseSeedHex, replay, train, type StepRecord, type TrainHyper, type TrainOptions, type TrainResult } from "../../src/runtime/train/trainer.js";
import { localWorld } from "../support/local-world.js";

const root = new URL("../../", import.meta.url).pathname;
const Q4 = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const DATA = join(root, "data/stories260K-self/train.txt");
const tmp = () => mkdtempSync(join(tmpdir(), "qzo-ranks-"));
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const sameBits = (a: readonly Float32Array[], b: readonly Float32Array[]) => a.length === b.length && a.every((x, i) => bits(x).equals(bits(b[i]!)));

/** Each shard's loss (and the whole batch's) is rounded to float32 once: they differ by at most two roundings. */
const U = 2 ** -24;

let ds: Dataset;
const hyper = (over: Partial<TrainHyper> = {}): TrainHyper => ({
  eps: 1e-2,
  epsMode: "relative",
  lr: 2e-3,
  schedule: "constant",
  warmup: 0,
  clip: 100,
  directions: 1,
  z: "gaussian",
  tensorPeriod: 1,
  momentum: 0,
  stepSize: "constant",
  scaleFloor: 1e-7,
  batch: 5,
  steps: 4,
  evalEvery: 2,
  seed: 11n,
  ...over,
});

function rankOptions(comm: Communicator, runDir: string, hp: TrainHyper, over: Partial<TrainOptions> = {}): TrainOptions {
  const data = datasetData(ds);
  const evalSet = { size: 3, batch: (idx: number[]) => data.batch(idx.map((i) => i + 20)) };
  return {
    backend: createInterpreterBackend(bindModel(Q4)),
    train: { size: 20, batch: data.batch },
    eval: evalSet,
    hp,
    runDir,
    model: { path: Q4, sha256: "0".repeat(64), spec: "llama" },
    progress: false,
    comm,
    checkEvery: 1,
    ...over,
  };
}

async function runRanks(hp: TrainHyper, dirs: string[], over: (rank: number) => Partial<TrainOptions> = () => ({})): Promise<{ results: TrainResult[]; opts: TrainOptions[] }> {
  const world = localWorld(dirs.length);
  const opts = world.map((c) => rankOptions(c, dirs[c.rank]!, hp, over(c.rank)));
  return { results: await Promise.all(opts.map((o) => train(o))), opts };
}

beforeAll(() => {
  const bound = bindModel(Q4);
  ds = loadDataset(DATA, modelTokenizer(bound.checkpoint), 24);
}, 60_000);

describe("two ranks in one process", () => {
  it("each step's losses are the whole batch's at the same scales (within two float32 roundings); the log replays to rank 0's scales; rank 1 writes nothing", async () => {
    const hp = hyper();
    const dirs = [tmp(), tmp()];
    const { results, opts } = await runRanks(hp, dirs);
    expect(results.map((r) => r.step)).toEqual([4, 4]);
    expect(readdirSync(dirs[1]!)).toEqual([]);
    expect(sameBits(opts[0]!.backend.values(), opts[1]!.backend.values())).toBe(true);
    // Four doubles per step, the four-double scale check after every step, two doubles for each of the
    // three evaluations (before the first step, after steps 2 and 4).
    expect(results[0]!.bytesPerStep).toBe(32 + 32 + (3 * 16) / 4);

    // One process with the whole batch, stepped along rank 0's log.
    const log = readFileSync(join(dirs[0]!, "log.jsonl"), "utf8");
    const steps = parseLog(log).filter((r): r is StepRecord => "seed" in r);
    const single = createInterpreterBackend(bindModel(Q4));
    const data = datasetData(ds);
    for (const r of steps) {
      const { lo, hi } = parseSeedHex(r.seed as string);
      const batch = data.batch(batchOrder(20, hp.batch, hp.seed, r.step));
      const pert = { seedLo: lo, seedHi: hi, eps: hp.eps, epsMode: hp.epsMode, dist: hp.z };
      const lp = single.loss(batch, { ...pert, sign: 1 });
      const lm = single.loss(batch, { ...pert, sign: -1 });
      expect(Math.abs((r.loss_plus as number) - lp)).toBeLessThanOrEqual(2 * U * lp);
      expect(Math.abs((r.loss_minus as number) - lm)).toBeLessThanOrEqual(2 * U * lm);
      single.update({ seedLo: lo, seedHi: hi, d: r.d as number, lr: r.lr, epsMode: hp.epsMode, dist: hp.z, floor: hp.scaleFloor });
    }
    expect(sameBits(single.values(), opts[0]!.backend.values())).toBe(true);
    const replayed = createInterpreterBackend(bindModel(Q4));
    expect(replay(log, replayed)).toBe(4);
    expect(sameBits(replayed.values(), loadScalesCheckpoint(join(dirs[0]!, "scales.safetensors"), { trainables: replayed.trainables }).values)).toBe(true);
  }, 120_000);

  it("a stop asked of rank 1 alone stops both ranks after the same step; resuming on two ranks ends where an uninterrupted run ends", async () => {
    const hp = hyper({ steps: 5, evalEvery: 0 });
    const whole = await runRanks(hp, [tmp(), tmp()]);
    const dirs = [tmp(), tmp()];
    let rank1Steps = 0;
    const first = await runRanks(hp, dirs, (rank) => (rank === 1 ? { onStep: (s) => void (rank1Steps = s.step), shouldStop: () => rank1Steps >= 2 } : {}));
    expect(first.results.map((r) => [r.stopped, r.step])).toEqual([
      [true, 3],
      [true, 3],
    ]);
    expect(loadScalesCheckpoint(join(dirs[0]!, "scales.safetensors"), { trainables: first.opts[0]!.backend.trainables }).step).toBe(3);
    // Rank 1 has no checkpoint of its own: rank 0 sends it the values.
    const resumed = await runRanks(hp, dirs, () => ({ resume: true }));
    expect(resumed.results.map((r) => [r.startStep, r.step])).toEqual([
      [3, 5],
      [3, 5],
    ]);
    expect(sameBits(resumed.opts[1]!.backend.values(), whole.opts[0]!.backend.values())).toBe(true);
    expect(readFileSync(join(dirs[0]!, "log.jsonl"), "utf8").replace(/"seconds":[^}]*/g, "")).toBe(
      readFileSync(join(whole.opts[0]!.runDir, "log.jsonl"), "utf8").replace(/"seconds":[^}]*/g, ""),
    );
    expect(readdirSync(dirs[1]!)).toEqual([]);
  }, 120_000);

  it("a rank whose updates differ ends the run on both ranks at the next scale check, in one CollectiveError", async () => {
    const hp = hyper({ steps: 6, evalEvery: 0 });
    const results = await Promise.allSettled(
      localWorld(2).map((c) => {
        const o = rankOptions(c, tmp(), hp, { checkEvery: 2 });
        if (c.rank === 1) {
          // Another rank's numerics, in effect: every update of rank 1 is 1% larger.
          const b = o.backend;
          o.backend = { name: b.name, trainables: b.trainables, values: () => b.values(), setValues: (v) => b.setValues(v), loss: (x, p) => b.loss(x, p), update: (u) => b.update({ ...u, lr: u.lr * 1.01 }) };
        }
        return train(o);
      }),
    );
    for (const r of results) {
      const e = (r as PromiseRejectedResult).reason as Error;
      expect(e).toBeInstanceOf(CollectiveError);
      expect(e.message).toBe("the ranks' scales differ after step 2: a rank applied another update (other kernels, compiler or hardware?)");
    }
  }, 120_000);
});
