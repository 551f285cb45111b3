/**
 * The abstract syntax tree of a .qzo file: what the parser produces and the
 * checker and the formatter consume. Every node keeps its source span. Items
 * (declarations and statements) also keep the comments written around them,
 * so that `qzoc fmt` never loses a comment.
 */
import type { Span } from "../source.js";

export interface Node {
  span: Span;
}

/** Comments attached to a declaration or statement (text after the `#`). */
export interface Commented {
  /** Comment texts; BLANK_LINE marks a blank line between comment paragraphs. */
  leading: string[];
  trailing?: string;
}

/** Stands in a comment list for a blank line (a comment can never contain a newline). */
export const BLANK_LINE = "\n";

export interface Ident extends Node {
  name: string;
}

// ---------------------------------------------------------------- expressions

/**
 * One expression grammar serves config values, shapes, layout positions and
 * graph bodies; the checker decides which forms are legal where.
 */
export type Expr =
  | NumberLit
  | StringLit
  | BoolLit
  | NameRef
  | IndexExpr
  | CallExpr
  | BinaryExpr
  | UnaryExpr
  | ListExpr;

export interface NumberLit extends Node {
  kind: "number";
  /** The literal as written, so that formatting keeps `1e-5` as `1e-5`. */
  text: string;
  value: number;
  isInt: boolean;
}

export interface StringLit extends Node {
  kind: "string";
  value: string;
}

export interface BoolLit extends Node {
  kind: "bool";
  value: boolean;
}

export interface NameRef extends Node {
  kind: "name";
  name: string;
}

export interface IndexExpr extends Node {
  kind: "index";
  target: Expr;
  indices: Expr[];
}

export interface NamedArg extends Node {
  name: Ident;
  value: Expr;
}

export interface CallExpr extends Node {
  kind: "call";
  callee: Ident;
  args: Expr[];
  named: NamedArg[];
}

export type BinaryOp = "+" | "-" | "*" | "/" | "%";

export interface BinaryExpr extends Node {
  kind: "binary";
  op: BinaryOp;
  left: Expr;
  right: Expr;
}

export interface UnaryExpr extends Node {
  kind: "unary";
  op: "-";
  operand: Expr;
}

export interface ListExpr extends Node {
  kind: "list";
  items: Expr[];
}

// ---------------------------------------------------------------- types

/** `f32[vocab, dim]`, `q4_0[dim, dim]`, `weight[dim, hidden] or f16`. */
export interface TypeExpr extends Node {
  /** A float/int dtype name, a format name, or a config entry of type format. */
  base: Ident;
  shape: Expr[];
  /** `or f16`: the storage to fall back to when the format does not fit the shape. */
  fallback?: Ident;
}

// ---------------------------------------------------------------- file

export interface File extends Node {
  imports: ImportDecl[];
  decls: TopDecl[];
  /** Comments after the last declaration. */
  endComments: string[];
}

export type TopDecl = FormatDecl | ModelDecl;

export interface ImportDecl extends Node, Commented {
  kind: "import";
  path: StringLit;
}

// ---------------------------------------------------------------- formats

export interface FormatDecl extends Node, Commented {
  kind: "format";
  name: Ident;
  clauses: FormatClause[];
  endComments: string[];
}

export type FormatClause =
  | CodeClause
  | BlockClause
  | ScaleClause
  | ZeroClause
  | MinClause
  | CodebookClause
  | LayoutClause;

/** `code u4 offset 8`, `code i8`, `code u4 lookup nf4_values`. */
export interface CodeClause extends Node, Commented {
  kind: "code";
  type: Ident;
  offset?: Expr;
  lookup?: Ident;
}

/** `block 32 along in`: the group of weights that shares a scale. */
export interface BlockClause extends Node, Commented {
  kind: "block";
  size: Expr;
  axis: Ident;
}

/** `scale f16` (per block unless `per row` / `per tensor`). */
export interface ScaleClause extends Node, Commented {
  kind: "scale";
  dtype: Ident;
  per?: Ident;
}

/** `zero u4 adjust 1`: a zero-point per block; stored value + adjust = zero. */
export interface ZeroClause extends Node, Commented {
  kind: "zero";
  type: Ident;
  adjust?: Expr;
}

/** `min f16`: an additive minimum per block (w = scale * code + min). */
export interface MinClause extends Node, Commented {
  kind: "min";
  dtype: Ident;
}

/**
 * `codebook nf4_values f32[16] = [...]` (a constant table) or
 * `codebook cb f16[2, 256, 8] additive in "codebooks"` (M tables of E vectors of
 * V weights, stored in the checkpoint; a weight vector is the sum of one entry per table).
 */
export interface CodebookClause extends Node, Commented {
  kind: "codebook";
  name: Ident;
  type: TypeExpr;
  values?: ListExpr;
  additive: boolean;
  /** The checkpoint tensor (beside the weight's name) that holds an additive codebook. */
  tensor?: StringLit;
}

export interface LayoutClause extends Node, Commented {
  kind: "layout";
  layout: RecordLayout | TensorsLayout;
}

/** One record of `bytes` bytes per block, records in row-major block order. */
export interface RecordLayout extends Node {
  kind: "record";
  bytes: Expr;
  fields: RecordField[];
  endComments: string[];
}

/**
 * `scale at 0` / `code[i] at 2 + i % 16 bit 4 * (i / 16)`: the field starts at
 * bit 8*byte + bit of the record read as a little-endian bit stream.
 */
export interface RecordField extends Node, Commented {
  field: Ident;
  index?: Ident;
  byte: Expr;
  bit?: Expr;
}

/** Separate checkpoint tensors (GPTQ, bitsandbytes, AQLM). */
export interface TensorsLayout extends Node {
  kind: "tensors";
  fields: TensorField[];
  endComments: string[];
}

/** `code in "qweight" i32[in / 8, out] at [c / 8, r] bit 4 * (c % 8)`. */
export interface TensorField extends Node, Commented {
  field: Ident;
  tensor: StringLit;
  type: TypeExpr;
  at: Expr[];
  bit?: Expr;
}

// ---------------------------------------------------------------- models

export interface ModelDecl extends Node, Commented {
  kind: "model";
  name: Ident;
  items: ModelItem[];
  endComments: string[];
}

export type ModelItem = ConfigBlock | ParamDecl | ParamLoop | GraphDecl | TrainBlock;

export interface ConfigBlock extends Node, Commented {
  kind: "config";
  entries: ConfigEntry[];
  endComments: string[];
}

export interface ConfigEntry extends Node, Commented {
  name: Ident;
  type: Ident;
  /** The default, used when no checkpoint source provides a value. */
  value: Expr;
  /** Checkpoint metadata keys that provide the value, per checkpoint family. */
  sources: SourceRef[];
}

/** A checkpoint tensor a parameter is read from, for one checkpoint family. */
export interface SourceRef extends Node {
  family: Ident;
  /** Alternatives tried in order (`"wcls" or "token_embedding_table"`). */
  names: SourceName[];
}

export interface SourceName extends Node {
  /** `"blk.{l}.attn_q.weight"`: `{l}` is replaced by the loop index. */
  tensor: StringLit;
  /** `"wq"[l]`: a slice of a layer-stacked tensor. */
  index?: Expr;
  /** `| rope_permute(n_heads)`, `| transpose()`: applied in order when loading. */
  transforms: CallExpr[];
}

export interface ParamDecl extends Node, Commented {
  kind: "param";
  name: Ident;
  /** The loop variable this parameter is indexed by (`param wq[l]`). */
  index?: Ident;
  type: TypeExpr;
  sources: SourceRef[];
}

export interface ParamLoop extends Node, Commented {
  kind: "param_loop";
  var: Ident;
  from: Expr;
  to: Expr;
  params: ParamDecl[];
  endComments: string[];
}

export interface GraphInput extends Node {
  name: Ident;
  type: TypeExpr;
}

export interface GraphDecl extends Node, Commented {
  kind: "graph";
  /** `graph` computes values; `loss` returns one scalar to minimise. */
  role: "graph" | "loss";
  name: Ident;
  inputs: GraphInput[];
  result?: TypeExpr;
  body: Stmt[];
  endComments: string[];
}

export type Stmt = AssignStmt | ForStmt | ReturnStmt;

export interface AssignStmt extends Node, Commented {
  kind: "assign";
  target: Ident;
  value: Expr;
}

export interface ForStmt extends Node, Commented {
  kind: "for";
  var: Ident;
  from: Expr;
  to: Expr;
  body: Stmt[];
  endComments: string[];
}

export interface ReturnStmt extends Node, Commented {
  kind: "return";
  value: Expr;
}

// ---------------------------------------------------------------- training

export interface TrainBlock extends Node, Commented {
  kind: "train";
  /** `train distill { ... }`: settings for training with that loss, over the unnamed block's. */
  loss?: Ident;
  settings: TrainSetting[];
  endComments: string[];
}

/**
 * `eps = 1e-3`, `eps = 1e-2 relative`, `loss = lm`,
 * `trainable = scales(linear) - scales("output")`.
 */
export interface TrainSetting extends Node, Commented {
  key: Ident;
  value: Expr;
  modifier?: Ident;
}
