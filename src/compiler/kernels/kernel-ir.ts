/**
 * The kernel IR: one graph of the typed IR lowered to a sequence of kernel
 * launches over planned buffers, the input of every code generator (C++ for
 * CPUs, CUDA for GPUs). A kernel says which IR nodes it implements, so the
 * generated code can say so too.
 *
 * Weights are never materialized dequantized: a `matmul` or `embedding` kernel
 * reads a quantized parameter's codes from its packed storage and its scales
 * from an fp32 array (the trainer's master copy), and perturbs each scale
 * inline as s + sign*eps*z(seed, t, index) when the parameter is trainable.
 */
import type { AttrValue } from "../ir/ir.js";

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

/** A parameter operand: a parameter (one layer of an array) read in place. */
export interface KParam {
  param: string;
  /** Index expression of a parameter array, over loop variables (e.g. "l"). */
  index?: string;
}

export type KArg = { buffer: number } | { param: KParam };

export interface KKernel {
  kind: "kernel";
  /** matmul, embedding, rmsnorm, layernorm, rope, attention, unary, binary, ... */
  op: string;
  args: KArg[];
  outputs: number[];
  attrs: Record<string, AttrValue>;
  /** The IR nodes this kernel implements, e.g. "%7 = linear (models/llama.qzo:99:16)". */
  from: string[];
}

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

/** Every kernel of a program, loop bodies included, in launch order. */
export function kernelsOf(steps: KStep[]): KKernel[] {
  const out: KKernel[] = [];
  for (const s of steps) {
    if (s.kind === "kernel") out.push(s);
    else out.push(...kernelsOf(s.body));
  }
  return out;
}
