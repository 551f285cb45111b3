/**
 * What the ranks of a data-parallel run agree on, over N ranks in one process (test/support/local-world):
 * the shards of a batch, rank 0's decisions and errors, the identity check that names the first
 * difference, and the scale-hash comparison.
 */
import { describe, expect, it } from "vitest";
import { CollectiveError, SOLO, checkSameAsRoot, decideOnRoot, sameOnAllRanks, shardRange, valuesHash } from "../../src/runtime/parallel/communicator.js";
import { QzoError } from "../../src/util/errors.js";
import { localWorld } from "../support/local-world.js";

describe("shardRange", () => {
  it("deals every example of a batch to exactly one rank, in order, shard sizes differing by at most one", () => {
    for (let n = 1; n <= 24; n++) {
      for (let size = 1; size <= Math.min(n, 6); size++) {
        const shards = Array.from({ length: size }, (_, r) => shardRange(n, r, size));
        expect(shards[0]!.lo).toBe(0);
        expect(shards[size - 1]!.hi).toBe(n);
        shards.forEach((s, r) => r > 0 && expect(s.lo).toBe(shards[r - 1]!.hi));
        const sizes = shards.map((s) => s.hi - s.lo);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(1);
      }
    }
  });
});

describe("collective decisions", () => {
  it("decideOnRoot: every rank gets rank 0's value, which only rank 0 computes", async () => {
    const world = localWorld(3);
    let calls = 0;
    const got = await Promise.all(world.map((c) => decideOnRoot(c, () => (calls++, { seqLen: 64, rank: c.rank }))));
    expect(got).toEqual([{ seqLen: 64, rank: 0 }, { seqLen: 64, rank: 0 }, { seqLen: 64, rank: 0 }]);
    expect(calls).toBe(1);
  });

  it("decideOnRoot: rank 0's error reaches every rank as a CollectiveError with its exit code", async () => {
    const world = localWorld(2);
    const got = await Promise.allSettled(
      world.map((c) =>
        decideOnRoot(c, () => {
          throw new QzoError("run: already holds a run", 2);
        }),
      ),
    );
    for (const r of got) {
      expect(r.status).toBe("rejected");
      const e = (r as PromiseRejectedResult).reason as CollectiveError;
      expect(e).toBeInstanceOf(CollectiveError);
      expect(e.message).toBe("run: already holds a run");
      expect(e.exitCode).toBe(2);
    }
  });

  it("checkSameAsRoot passes when all agree and otherwise names the first rank that differs and how, on every rank", async () => {
    const same = localWorld(3);
    await Promise.all(same.map((c) => checkSameAsRoot(c, { model: "aa", data: "dd" })));
    const world = localWorld(3);
    const mine = [{ model: "aa", data: "dd" }, { model: "aa", data: "dd" }, { model: "bb", data: "ee" }];
    const got = await Promise.allSettled(world.map((c) => checkSameAsRoot(c, mine[c.rank]!)));
    for (const r of got) {
      const e = (r as PromiseRejectedResult).reason as CollectiveError;
      expect(e).toBeInstanceOf(CollectiveError);
      expect(e.message).toBe("rank 2 of 3 differs from rank 0 in its model: bb instead of aa");
    }
  });

  it("sameOnAllRanks: equal values agree; one flipped bit on one rank (even -0 for 0) is seen by all", async () => {
    const values = () => [Float32Array.of(1, 2, 3), Float32Array.of(0.5, 0)];
    const world = localWorld(2);
    expect(await Promise.all(world.map((c) => sameOnAllRanks(c, values())))).toEqual([true, true]);
    const flipped = values();
    flipped[1]![1] = -0;
    expect(valuesHash(flipped)).not.toEqual(valuesHash(values()));
    expect(await Promise.all(world.map((c) => sameOnAllRanks(c, c.rank === 1 ? flipped : values())))).toEqual([false, false]);
    // Tensors are delimited: moving a value from one tensor to the next changes the hash.
    expect(valuesHash([Float32Array.of(1, 2), Float32Array.of(3)])).not.toEqual(valuesHash([Float32Array.of(1), Float32Array.of(2, 3)]));
    expect(await sameOnAllRanks(SOLO, values())).toBe(true);
  });
});
