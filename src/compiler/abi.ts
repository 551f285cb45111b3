/**
 * The C ABI of a generated kernel library, described by the library itself (`qzo_manifest()`), so
 * that every caller (the runtime's backends, the benchmarks, bench/gpu-check.py) builds its
 * arguments from names instead of positions.
 *
 * Every entry point has the signature `int f(void** ptrs, const double* scalars, int64 n_ptrs,
 * int64 n_scalars)` and returns 0, or non-zero with `qzo_last_error()` set (2: wrong argument
 * counts). `qzo_run_<graph>` takes the pointers of `pointers` (graph inputs by name, the output,
 * then every weight slot of `weights` in order) and the scalars named in `scalars`; `qzo_update`
 * takes the trainable tensors' fp32 master arrays in manifest order and `UPDATE_SCALARS`.
 */
import type { TrainableEntry } from "./ir/trainables.js";
import type { WeightSlot } from "./codegen/weight-slots.js";

/** The scalars of a graph call after its free dimensions (`dim:B`, ...): the perturbation, then the thread count. */
export const RUN_SCALARS = ["seed_lo", "seed_hi", "sign", "eps", "relative", "rademacher", "period", "threads"] as const;

/** The scalars of `qzo_update`. */
export const UPDATE_SCALARS = ["seed_lo", "seed_hi", "d", "lr", "relative", "rademacher", "period", "floor"] as const;

export type RunScalar = (typeof RUN_SCALARS)[number] | `dim:${string}`;
export type UpdateScalar = (typeof UPDATE_SCALARS)[number];

/** A pointer argument of a graph call: one input (by name), the output, or all weight slots in order. */
export type PointerArg = { kind: "input"; name: string } | { kind: "output" } | { kind: "weights" };

export interface GraphAbi {
  name: string;
  role: "graph" | "loss";
  entry: string;
  inputs: { name: string; dtype: "f32" | "i32"; shape: string[] }[];
  output: { dtype: "f32" | "i32"; shape: string[] };
  /** The graph's free dimensions (B, T, ...), bound from the inputs' shapes. */
  dims: string[];
  pointers: PointerArg[];
  scalars: RunScalar[];
  /** The number of pointers and scalars of a call (the weights counted one by one). */
  nPtrs: number;
  nScalars: number;
  /** Planned temporary bytes, symbolic. */
  peakBytes: string;
}

export interface TrainableSlot extends TrainableEntry {
  /** Number of fp32 values. */
  size: number;
  /** The weight slot that holds its master copy. */
  slot: number;
}

export interface Manifest {
  abi: 1;
  module: string;
  source: string;
  /** sha256 of what the code was generated from (the module's IR, the graphs, the options). */
  inputsHash: string;
  target: "cpu" | "cuda";
  graphs: GraphAbi[];
  weights: WeightSlot[];
  trainables: TrainableSlot[];
  update: { entry: "qzo_update"; scalars: readonly UpdateScalar[] };
}

/** The scalar arguments of a call, by name (`values` holds `dim:B`, `seed_lo`, ...). */
export function scalarArgs(names: readonly string[], values: Readonly<Record<string, number>>, entry: string): number[] {
  return names.map((n) => {
    const v = values[n];
    if (v === undefined) throw new Error(`internal: ${entry}: no value for the scalar '${n}'`);
    return v;
  });
}
