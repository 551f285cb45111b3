/**
 * What a data-parallel QZO run needs from its ranks: a reduction of a few doubles per step and
 * a broadcast of bytes at start (and on resume), both awaited so that signals are seen while a
 * rank waits for the others. SOLO is the one-process world: its collectives return their input.
 *
 * Errors that every rank detects the same way (a rank holding another model, scales that
 * differ) are CollectiveErrors: rank 0 prints them, the others exit quietly with the same code.
 * A rank that cannot finish a collective because another rank is gone raises PeerLostError.
 */
import { QzoError } from "../../util/errors.js";

export type ReduceOp = "sum" | "max" | "min";

export interface Communicator {
  readonly rank: number;
  readonly size: number;
  /** The library and launcher, for run.json ("Open MPI v4.1.4, 2 ranks"). */
  readonly description: string;
  /** Element-wise reduction over all ranks; every rank receives the result. */
  allreduce(values: Float64Array, op: ReduceOp, wait?: WaitOptions): Promise<Float64Array>;
  /** Rank `root`'s bytes on every rank (the others pass anything, e.g. an empty array). */
  broadcast(bytes: Uint8Array, root: number, wait?: WaitOptions): Promise<Uint8Array>;
  /** Payload bytes this rank has handed to collectives so far (what it sends to a peer in a two-rank job). */
  readonly bytesSent: number;
  /** Ends the world after a run that every rank finished or stopped together; idempotent. */
  finalize(): void;
}

export interface WaitOptions {
  /** Polled while waiting: true once a signal asked this rank to stop. */
  interrupted?: () => boolean;
  /** Called once, when `interrupted` first turns true while the collective is still pending. */
  onInterrupted?: () => void;
}

/** How long a rank that was asked to stop still waits for a pending collective before it gives up on the others. */
export const PEER_GRACE_MS = 300;

/** An error that every rank has detected identically: printed by rank 0 only. */
export class CollectiveError extends QzoError {
  constructor(message: string, exitCode: 1 | 2 = 1) {
    super(message, exitCode);
    this.name = "CollectiveError";
  }
}

/** A collective could not complete: another rank has ended (or the launcher is ending the job). */
export class PeerLostError extends QzoError {
  constructor(message: string) {
    super(message);
    this.name = "PeerLostError";
  }
}

export const SOLO: Communicator = {
  rank: 0,
  size: 1,
  description: "one process",
  allreduce: (values) => Promise.resolve(Float64Array.from(values)),
  broadcast: (bytes) => Promise.resolve(Uint8Array.from(bytes)),
  bytesSent: 0,
  finalize: () => undefined,
};

/** Examples [lo, hi) of a global batch of `n` that rank `rank` of `size` takes: contiguous, sizes differing by at most one. */
export function shardRange(n: number, rank: number, size: number): { lo: number; hi: number } {
  return { lo: Math.floor((rank * n) / size), hi: Math.floor(((rank + 1) * n) / size) };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Rank 0's JSON value on every rank. */
export async function broadcastJson<T>(comm: Communicator, value: T | undefined, wait?: WaitOptions): Promise<T> {
  const bytes = comm.rank === 0 ? encoder.encode(JSON.stringify(value)) : new Uint8Array(0);
  return JSON.parse(decoder.decode(await comm.broadcast(bytes, 0, wait))) as T;
}

type Outcome<T> = { ok: T } | { error: string; exitCode: 1 | 2 };

/**
 * Rank 0 decides (reads the run directory, resolves settings); every rank gets the decision, or
 * throws the CollectiveError that rank 0 met while deciding.
 */
export async function decideOnRoot<T>(comm: Communicator, decide: () => T, wait?: WaitOptions): Promise<T> {
  let outcome: Outcome<T> | undefined;
  if (comm.rank === 0) {
    try {
      outcome = { ok: decide() };
    } catch (e) {
      if (!(e instanceof QzoError)) throw e;
      outcome = { error: e.message, exitCode: e.exitCode };
    }
  }
  const got = await broadcastJson(comm, outcome, wait);
  if ("error" in got) throw new CollectiveError(got.error, got.exitCode);
  return got.ok;
}

/**
 * Every rank must hold the same values as rank 0 (model hash, spec, data, flags): the first rank
 * that differs names the difference, and every rank throws it.
 */
export async function checkSameAsRoot(comm: Communicator, mine: Record<string, string>, wait?: WaitOptions): Promise<void> {
  const root = await broadcastJson(comm, mine, wait);
  const keys = [...new Set([...Object.keys(root), ...Object.keys(mine)])];
  const diff = keys.find((k) => root[k] !== mine[k]);
  const firstBad = (await comm.allreduce(Float64Array.of(diff === undefined ? comm.size : comm.rank), "min", wait))[0]!;
  if (firstBad >= comm.size) return;
  const text = comm.rank === firstBad ? encoder.encode(`rank ${comm.rank} of ${comm.size} differs from rank 0 in its ${diff}: ${shorten(mine[diff!])} instead of ${shorten(root[diff!])}`) : new Uint8Array(0);
  throw new CollectiveError(decoder.decode(await comm.broadcast(text, firstBad, wait)));
}

const shorten = (v: string | undefined): string => (v === undefined ? "(none)" : v.length > 80 ? v.slice(0, 77) + "..." : v);

/** A 64-bit hash (two 32-bit FNV-1a lanes) of float arrays' bits, as two exact doubles. */
export function valuesHash(values: readonly Float32Array[]): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (const v of values) {
    const words = new Uint32Array(v.buffer, v.byteOffset, v.length);
    for (let i = 0; i < words.length; i++) {
      a = Math.imul(a ^ words[i]!, 0x01000193);
      b = Math.imul(b ^ (words[i]! >>> 16) ^ (words[i]! << 16), 0x01000193);
    }
    a = Math.imul(a ^ v.length, 0x01000193);
  }
  return [a >>> 0, b >>> 0];
}

/** Whether every rank's values hash the same (one max-reduction of four doubles). */
export async function sameOnAllRanks(comm: Communicator, values: readonly Float32Array[], wait?: WaitOptions): Promise<boolean> {
  if (comm.size === 1) return true;
  const [a, b] = valuesHash(values);
  const r = await comm.allreduce(Float64Array.of(a, b, -a, -b), "max", wait);
  return r[0] === -r[2] && r[1] === -r[3];
}
