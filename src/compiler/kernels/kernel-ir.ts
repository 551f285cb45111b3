/**
 * The kernel IR: one graph of the typed IR lowered to a sequence of kernel
 * launches over planned buffers, the input of every target's code generator.
 *
 * A kernel is one op of a closed union (`KOp`), each with named operands and
 * typed attributes; `KERNEL_OPS` lists, per op, which fields are operands, so
 * passes and printers can walk any kernel without knowing its op. A kernel
 * says which IR nodes it implements (`from`), so generated code can say so too.
 *
 * Weights are never materialized dequantized: a kernel reads a quantized
 * parameter (a `KWeight` operand) from its packed storage and its scales from
 * an fp32 array (the trainer's master copy), and perturbs each scale inline as
 * s + sign*eps*z(seed, t, index) when the parameter is trainable.
 *
 * Programs are values: passes return new programs and never modify their input.
 */

export type KDType = "f32" | "i32";

export interface KBuffer {
  id: number;
  /** A readable name: the source variable, or the op that made it. */
  name: string;
  dtype: KDType;
  /** Canonical symbolic shape (config names and graph dimensions). */
  shape: string[];
  role: "input" | "output" | "temp";
  /** Storage slot assigned by buffer planning (temps only). */
  slot?: number;
}

/** A parameter (one layer of an array) read in place. */
export interface KParam {
  param: string;
  /** Index expression of a parameter array, over loop variables (e.g. "l"). */
  index?: string;
}

/** A computed value. */
export interface KBuf {
  buffer: number;
}

/** A parameter operand. */
export interface KWeight {
  param: KParam;
}

/** What an op reads: a computed value or a parameter. */
export type KOperand = KBuf | KWeight;

/** A compile-time constant operand of an elementwise op. */
export interface KScalar {
  scalar: number;
}

export type Activation = "silu" | "gelu" | "relu";
export type UnaryFn = Activation | "gelu_tanh" | "neg";
export type BinaryFn = "add" | "sub" | "mul" | "div";

/** Every kernel op, with its operands and attributes. */
export type KOp =
  | { op: "matmul"; x: KBuf; w: KWeight; bias?: KOperand; residual?: KBuf; act?: Activation }
  | { op: "matmul_glu"; x: KBuf; gate: KWeight; up: KWeight; act: Activation }
  | { op: "matmul_ce"; x: KBuf; w: KWeight; tokens: KBuf; mask: KBuf }
  | { op: "matmul_distill_ce"; x: KBuf; w: KWeight; ids: KBuf; probs: KBuf; mask: KBuf }
  | { op: "embedding"; table: KWeight; ids: KBuf }
  | { op: "rmsnorm"; x: KBuf; w: KOperand; eps: number }
  | { op: "layernorm"; x: KBuf; w?: KOperand; b?: KOperand; eps: number }
  | { op: "rope"; x: KBuf; heads: number; theta: number; style: "interleaved" | "rotate_half" }
  | { op: "attention"; q: KBuf; k: KBuf; v: KBuf; heads: number; kvHeads: number; causal: boolean }
  | { op: "softmax"; x: KBuf }
  | { op: "unary"; fn: UnaryFn; x: KBuf }
  | { op: "binary"; fn: BinaryFn; a: KBuf | KScalar; b: KBuf | KScalar }
  | { op: "positions"; tokens: KBuf; offset: number }
  | { op: "next_token_ce"; logits: KBuf; tokens: KBuf; mask: KBuf }
  | { op: "distill_ce"; logits: KBuf; ids: KBuf; probs: KBuf; mask: KBuf }
  | { op: "candidate_ce"; logits: KBuf; tokens: KBuf; mask: KBuf; label: KBuf; candidates: number }
  | { op: "mse"; pred: KBuf; target: KBuf }
  | { op: "copy"; x: KBuf }
  | { op: "chunk"; x: KBuf; parts: number; index: number }
  | { op: "concat"; a: KBuf; b: KBuf; axis: number }
  | { op: "patchify"; x: KBuf; patch: number }
  | { op: "unpatchify"; y: KBuf; like: KBuf; patch: number }
  | { op: "pos_crop"; table: KOperand; like: KBuf; patch: number; grid: number }
  | { op: "timestep_embedding"; t: KBuf; dim: number; flip: boolean; shift: number; maxPeriod: number };

export type KOpName = KOp["op"];
export type KOpOf<N extends KOpName> = Extract<KOp, { op: N }>;

/** One kernel launch: an op, the buffer it writes, and the IR nodes it implements. */
export type KKernel = KOp & {
  kind: "kernel";
  out: number;
  /** The IR nodes this kernel implements, e.g. "%7 = linear (models/llama.qzo:99:16)". */
  from: string[];
};

export type KKernelOf<N extends KOpName> = Extract<KKernel, { op: N }>;

/** A loop over layers: `carried` buffers are read at the top of each iteration and written back at its end. */
export interface KLoop {
  kind: "loop";
  var: string;
  start: string;
  end: string;
  /** For each carried value: the buffer holding it across iterations and the buffer the body yields. */
  carried: { buffer: number; yields: number }[];
  body: KStep[];
  /** The IR `for` node, as text with its source location. */
  from: string;
}

export type KStep = KKernel | KLoop;

export interface KProgram {
  module: string;
  graph: string;
  role: "graph" | "loss";
  buffers: KBuffer[];
  inputs: number[];
  output: number;
  steps: KStep[];
  /** Passes applied so far, in order. */
  passes: string[];
  /** After buffer planning: the byte size of each slot, and their sum (symbolic). */
  slots?: string[];
  peakBytes?: string;
}

type OperandField<K> = { [F in keyof K]-?: NonNullable<K[F]> extends KOperand | KScalar ? F : never }[keyof K];
type AttrField<K> = Exclude<keyof K, OperandField<K> | "op">;

/** Per op: its operand fields in order (the order of generated arguments) and its attribute fields. */
export const KERNEL_OPS: { [N in KOpName]: { operands: readonly OperandField<KOpOf<N>>[]; attrs: readonly AttrField<KOpOf<N>>[] } } = {
  matmul: { operands: ["x", "w", "bias", "residual"], attrs: ["act"] },
  matmul_glu: { operands: ["x", "gate", "up"], attrs: ["act"] },
  matmul_ce: { operands: ["x", "w", "tokens", "mask"], attrs: [] },
  matmul_distill_ce: { operands: ["x", "w", "ids", "probs", "mask"], attrs: [] },
  embedding: { operands: ["table", "ids"], attrs: [] },
  rmsnorm: { operands: ["x", "w"], attrs: ["eps"] },
  layernorm: { operands: ["x", "w", "b"], attrs: ["eps"] },
  rope: { operands: ["x"], attrs: ["heads", "theta", "style"] },
  attention: { operands: ["q", "k", "v"], attrs: ["heads", "kvHeads", "causal"] },
  softmax: { operands: ["x"], attrs: [] },
  unary: { operands: ["x"], attrs: ["fn"] },
  binary: { operands: ["a", "b"], attrs: ["fn"] },
  positions: { operands: ["tokens"], attrs: ["offset"] },
  next_token_ce: { operands: ["logits", "tokens", "mask"], attrs: [] },
  distill_ce: { operands: ["logits", "ids", "probs", "mask"], attrs: [] },
  candidate_ce: { operands: ["logits", "tokens", "mask", "label"], attrs: ["candidates"] },
  mse: { operands: ["pred", "target"], attrs: [] },
  copy: { operands: ["x"], attrs: [] },
  chunk: { operands: ["x"], attrs: ["parts", "index"] },
  concat: { operands: ["a", "b"], attrs: ["axis"] },
  patchify: { operands: ["x"], attrs: ["patch"] },
  unpatchify: { operands: ["y", "like"], attrs: ["patch"] },
  pos_crop: { operands: ["table", "like"], attrs: ["patch", "grid"] },
  timestep_embedding: { operands: ["t"], attrs: ["dim", "flip", "shift", "maxPeriod"] },
};

/** The named operands of a kernel (absent optional ones left out), in the registry's order. */
export function operandsOf(k: KKernel): { name: string; value: KOperand | KScalar }[] {
  const spec = KERNEL_OPS[k.op] as { operands: readonly string[] };
  const rec = k as unknown as Record<string, KOperand | KScalar | undefined>;
  return spec.operands.flatMap((name) => (rec[name] === undefined ? [] : [{ name, value: rec[name]! }]));
}

/** The named attributes of a kernel (absent optional ones left out). */
export function attrsOf(k: KKernel): { name: string; value: string | number | boolean }[] {
  const spec = KERNEL_OPS[k.op] as { attrs: readonly string[] };
  const rec = k as unknown as Record<string, string | number | boolean | undefined>;
  return spec.attrs.flatMap((name) => (rec[name] === undefined ? [] : [{ name, value: rec[name]! }]));
}

/** The buffers a kernel reads. */
export function buffersRead(k: KKernel): number[] {
  return operandsOf(k).flatMap(({ value }) => ("buffer" in value ? [value.buffer] : []));
}

export function isBuf(o: KOperand | KScalar | undefined): o is KBuf {
  return o !== undefined && "buffer" in o;
}

/** Every kernel of a program, loop bodies included, in launch order. */
export function kernelsOf(steps: readonly KStep[]): KKernel[] {
  const out: KKernel[] = [];
  for (const s of steps) {
    if (s.kind === "kernel") out.push(s);
    else out.push(...kernelsOf(s.body));
  }
  return out;
}
