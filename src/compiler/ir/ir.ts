/**
 * The typed IR: what the checker produces and every later stage consumes.
 *
 * A Module holds the resolved config, the checked quantization formats, the
 * parameters and one SSA dataflow graph per `graph`/`loss` declaration (calls
 * to other graphs are inlined). Every value has a dtype and a symbolic shape
 * (strings in the canonical form of ./symbolic.ts); every node records the
 * source location it came from. The IR is plain data: it serializes to JSON
 * and back without loss (./json.ts).
 */

export type FloatDType = "f32" | "f16" | "bf16";
export type IntDType = "i32" | "i64" | "i16" | "i8" | "u8";
export type DType = FloatDType | IntDType;

export const FLOAT_DTYPES: readonly FloatDType[] = ["f32", "f16", "bf16"];
export const INT_DTYPES: readonly IntDType[] = ["i32", "i64", "i16", "i8", "u8"];

export function isFloatDType(s: string): s is FloatDType {
  return (FLOAT_DTYPES as readonly string[]).includes(s);
}

export function isDType(s: string): s is DType {
  return isFloatDType(s) || (INT_DTYPES as readonly string[]).includes(s);
}

/** Bits of one element of a dtype. */
export const DTYPE_BITS: Readonly<Record<DType, number>> = { f32: 32, f16: 16, bf16: 16, i32: 32, i64: 64, i16: 16, i8: 8, u8: 8 };

/** Where a node or declaration came from: `path:line:col`. */
export interface Loc {
  file: string;
  line: number;
  col: number;
}

/** The element type of a value: a plain dtype or the name of a quantization format. */
export type Elem = { kind: "dtype"; dtype: DType } | { kind: "quant"; format: string };

export interface TensorType {
  elem: Elem;
  /** Canonical symbolic dimensions; [] is a scalar. */
  shape: string[];
}

// ------------------------------------------------------------------ config

export type ConfigValue =
  | { type: "int"; value: number; expr: string }
  | { type: "float"; value: number; expr: string }
  | { type: "format"; value: string; expr: string };

export interface ConfigEntryIR {
  name: string;
  /** The default as written (`dim / n_heads`) and its value with all defaults applied. */
  value: ConfigValue;
  /** For int entries defined from others: the canonical expansion over base entries. */
  expansion?: string;
  /** Checkpoint metadata keys that provide the value, per family, tried in order. */
  sources: Record<string, SourceNameIR[]>;
  loc: Loc;
}

// ------------------------------------------------------------------ formats

export interface FormatIR {
  name: string;
  code: { signed: boolean; bits: number; offset: number; lookup?: string };
  /** Blocks of `size` weights along a row (in), along a column (out), or along the row-major flattened tensor (flat; the last block may be short). */
  block: { size: number; axis: "in" | "out" | "flat" };
  scale: { dtype: FloatDType; per: "block" | "row" | "tensor" };
  zero?: { signed: boolean; bits: number; adjust: number };
  min?: { dtype: FloatDType };
  codebooks: CodebookIR[];
  layout: RecordLayoutIR | TensorsLayoutIR;
  /** The dequantization formula derived from the declaration, for people. */
  formula: string;
  /** Bits of storage per weight, all fields counted (for Q4_0: 4.5). */
  bitsPerWeight: number;
  loc: Loc;
}

export interface CodebookIR {
  name: string;
  dtype: FloatDType;
  shape: number[];
  /** Constant tables carry their values; additive codebooks live in the checkpoint. */
  values?: number[];
  additive: boolean;
  /** Additive codebooks: the checkpoint tensor beside the weight's name that holds them. */
  tensor?: string;
}

/** A field position: expressions over the index variables, as canonical strings. */
export interface RecordFieldIR {
  field: "scale" | "zero" | "min" | "code";
  /** Start bit of element i in the record's little-endian bit stream: 8*byte + bit. */
  bitExpr: string;
  index?: string;
}

export interface RecordLayoutIR {
  kind: "record";
  bytes: number;
  fields: RecordFieldIR[];
}

export interface TensorFieldIR {
  field: "scale" | "zero" | "min" | "code";
  tensor: string;
  dtype: DType;
  shape: string[];
  at: string[];
  bit?: string;
}

export interface TensorsLayoutIR {
  kind: "tensors";
  fields: TensorFieldIR[];
}

// ------------------------------------------------------------------ params

export interface SourceNameIR {
  tensor: string;
  index?: string;
  transforms: { name: string; args: string[] }[];
}

export interface ParamIR {
  name: string;
  /** A parameter declared in `for l in 0..n` is an array: one tensor per index. */
  array?: { var: string; from: string; to: string };
  type: TensorType;
  /** The storage to fall back to when the format does not fit the shape. */
  fallback?: FloatDType;
  /** For the config defaults: the storage in use ("q4_0", or "f16" after a fallback). */
  resolved: string;
  /** The `format` config entry the storage comes from (`weight`), when it is not written directly. */
  storageEntry?: string;
  /** Per checkpoint family (llama2c, gguf, hf...), the names tried in order. */
  sources: Record<string, SourceNameIR[]>;
  /** How the graphs use it: "linear", "embedding" or "other" (for trainable selectors). */
  uses: string[];
  loc: Loc;
}

// ------------------------------------------------------------------ graphs

export type AttrValue = number | boolean | string;

export interface ValueIR {
  id: number;
  type: TensorType;
  /** The source variable this value was bound to, if any. */
  name?: string;
}

export interface NodeIR {
  op: string;
  inputs: number[];
  outputs: number[];
  attrs: Record<string, AttrValue>;
  /** `for` nodes: the loop body. */
  body?: BlockIR;
  loc: Loc;
}

/**
 * A block: its arguments (a loop's index and carried values), its nodes in
 * order, and the values it yields (a loop's next carried values).
 */
export interface BlockIR {
  args: number[];
  nodes: NodeIR[];
  yields: number[];
}

export interface GraphIR {
  name: string;
  role: "graph" | "loss";
  inputs: number[];
  outputs: number[];
  values: ValueIR[];
  body: BlockIR;
  loc: Loc;
}

// ------------------------------------------------------------------ training

export interface TrainableIR {
  /** A parameter name and the part of it that is trained. */
  param: string;
  field: "scale" | "min" | "weight";
}

export interface TrainIR {
  loss: string;
  trainable: TrainableIR[];
  eps: number;
  epsMode: "absolute" | "relative";
  lr: number;
  schedule: "constant" | "linear" | "cosine";
  warmup: number;
  clip: number;
  directions: number;
  z: "gaussian" | "rademacher";
  /** Each direction moves one in every tensorPeriod trainable tensors (1: all; rng/direction.ts). */
  tensorPeriod: number;
  /** Heavy-ball momentum of the step estimates, kept in seed space (0: none; train/step-rule.ts). */
  momentum: number;
  /** constant: lr as given; rms: lr divided by a running root mean square of d (train/step-rule.ts). */
  stepSize: "constant" | "rms";
  scaleFloor: number;
  batch: number;
  steps: number;
  evalEvery: number;
  seed: number;
  /** Per loss (`train LOSS { ... }`), the settings that replace the ones above when training with it. */
  byLoss: Record<string, Partial<TrainHyperIR>>;
}

/** The hyperparameters of a train block (everything but the loss and the trainable selection). */
export type TrainHyperIR = Omit<TrainIR, "loss" | "trainable" | "byLoss">;

/** The hyperparameters for training with `loss`: the train block's, with that loss's own block over them. */
export function trainHyperFor(t: TrainIR, loss: string): TrainHyperIR {
  const { loss: _l, trainable: _t, byLoss, ...base } = t;
  return { ...base, ...(byLoss[loss] ?? {}) };
}

export interface ModuleIR {
  name: string;
  source: string;
  config: ConfigEntryIR[];
  formats: FormatIR[];
  params: ParamIR[];
  graphs: GraphIR[];
  train: TrainIR;
}

