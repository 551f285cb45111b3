/**
 * Checks a `format` declaration and derives what the rest of the compiler
 * needs: code/scale/zero/min types, the storage layout with every position as
 * a canonical index expression, the dequantization formula and the bits per
 * weight. Layouts are verified concretely: every element of a small example
 * tensor is placed, and fields that overlap or fall outside their storage are
 * errors.
 */
import type * as A from "../syntax/ast.js";
import type { DiagnosticBag } from "../diagnostics.js";
import {
  type CodebookIR, type DType, type FloatDType, type FormatIR, type RecordFieldIR, type RecordLayoutIR,
  type TensorFieldIR,
  DTYPE_BITS, isDType, isFloatDType,
} from "../ir/ir.js";
import { Sym } from "../ir/symbolic.js";
import { EvalFailed, attempt, evalNumber, evalSym, fail } from "./evaluate.js";
import { locOf } from "./loc.js";

type Field = "scale" | "zero" | "min" | "code";
const FIELDS: readonly Field[] = ["scale", "zero", "min", "code"];


interface IntType {
  signed: boolean;
  bits: number;
}

/** The largest block (weights sharing a scale) and record a format may declare. */
export const MAX_BLOCK = 1 << 16;
export const MAX_RECORD_BYTES = 1 << 16;

function intType(id: A.Ident, diags: DiagnosticBag, what: string): IntType {
  const m = /^([iu])(\d+)$/.exec(id.name);
  const bits = m ? Number(m[2]) : 0;
  if (!m || bits < 1 || bits > 32) {
    return fail(diags, id, `unknown ${what} type '${id.name}'`, "expected i<bits> (two's complement) or u<bits> (unsigned), 1 to 32 bits, e.g. u4 or i8");
  }
  return { signed: m[1] === "i", bits };
}

function floatType(id: A.Ident, diags: DiagnosticBag, what: string): FloatDType {
  if (!isFloatDType(id.name)) return fail(diags, id, `${what} must be a float type (f32, f16 or bf16), found '${id.name}'`);
  return id.name;
}

function constInt(e: A.Expr, diags: DiagnosticBag, what: string): number {
  const v = evalNumber(e, () => undefined, diags, what);
  if (!Number.isInteger(v)) return fail(diags, e, `${what} must be an integer, found ${v}`);
  return v;
}

export function checkFormat(decl: A.FormatDecl, diags: DiagnosticBag): FormatIR | undefined {
  const seen = new Map<string, A.FormatClause>();
  for (const c of decl.clauses) {
    const key = c.kind === "codebook" ? `codebook ${c.name.name}` : c.kind;
    if (seen.has(key)) diags.error(c.span, `'${c.kind}' is given twice in format '${decl.name.name}'`);
    else seen.set(key, c);
  }
  const get = <K extends A.FormatClause["kind"]>(k: K) =>
    decl.clauses.find((c): c is Extract<A.FormatClause, { kind: K }> => c.kind === k);
  const before = diags.items.length;
  if (seen.size !== decl.clauses.length) return undefined;
  const codeC = get("code");
  const scaleC = get("scale");
  const layoutC = get("layout");
  const blockC = get("block");
  for (const [k, c] of [["code", codeC], ["scale", scaleC], ["layout", layoutC]] as const) {
    if (!c) diags.error(decl.name.span, `format '${decl.name.name}' has no '${k}' clause`, requiredHint(k));
  }
  if (!codeC || !scaleC || !layoutC) return undefined;

  const codebooks: CodebookIR[] = [];
  for (const c of decl.clauses) {
    if (c.kind === "codebook") {
      const cb = attempt(() => checkCodebook(c, diags));
      if (cb) codebooks.push(cb);
    }
  }
  const code = attempt(() => {
    const t = intType(codeC.type, diags, "code");
    const offset = codeC.offset ? constInt(codeC.offset, diags, "a code offset") : 0;
    let lookup: string | undefined;
    if (codeC.lookup) {
      const cb = codebooks.find((b) => b.name === codeC.lookup!.name);
      const declared = decl.clauses.some((c) => c.kind === "codebook" && c.name.name === codeC.lookup!.name);
      if (!cb && declared) throw new EvalFailed("codebook with errors");
      if (!cb) fail(diags, codeC.lookup, `unknown codebook '${codeC.lookup.name}'`, "declare it in this format: codebook NAME f32[16] = [...]");
      const entries = cb.additive ? cb.shape[1]! : cb.shape[0]!;
      if (entries !== 2 ** t.bits) {
        fail(diags, codeC.lookup, `codebook '${cb.name}' has ${entries} entries but ${t.bits}-bit codes index ${2 ** t.bits}`);
      }
      lookup = cb.name;
    }
    return { ...t, offset, ...(lookup ? { lookup } : {}) };
  });
  const scale = attempt(() => {
    const dtype = floatType(scaleC.dtype, diags, "a scale");
    const per = scaleC.per?.name ?? "block";
    if (per !== "block" && per !== "row" && per !== "tensor") {
      fail(diags, scaleC.per!, `a scale is 'per block', 'per row' or 'per tensor', not 'per ${per}'`);
    }
    return { dtype, per: per as "block" | "row" | "tensor" };
  });
  const block = attempt(() => {
    if (!blockC) {
      if (scale && scale.per !== "block") return { size: 0, axis: "in" as const };
      return fail(diags, scaleC, `a scale per block needs a 'block N along in' clause in format '${decl.name.name}'`);
    }
    const size = constInt(blockC.size, diags, "a block size");
    if (size <= 0 || size > MAX_BLOCK) fail(diags, blockC.size, `a block size is 1 to ${MAX_BLOCK}, found ${size}`);
    const axis = blockC.axis.name;
    if (axis !== "in" && axis !== "out" && axis !== "flat") fail(diags, blockC.axis, `a block runs 'along in', 'along out' or 'along flat' (the row-major flattened tensor), not along '${axis}'`);
    return { size, axis: axis as "in" | "out" | "flat" };
  });
  const zeroC = get("zero");
  const zero = zeroC && attempt(() => ({ ...intType(zeroC.type, diags, "zero-point"), adjust: zeroC.adjust ? constInt(zeroC.adjust, diags, "a zero adjustment") : 0 }));
  const minC = get("min");
  const min = minC && attempt(() => ({ dtype: floatType(minC.dtype, diags, "a min") }));
  if (diags.items.length > before || !code || !scale || !block) return undefined;

  const widths: Record<Field, number | undefined> = {
    code: code.bits,
    scale: DTYPE_BITS[scale.dtype],
    zero: zero?.bits,
    min: min ? DTYPE_BITS[min.dtype] : undefined,
  };
  if (layoutC.layout.kind === "record" && block.axis === "flat") {
    diags.error(layoutC.layout.span, "records hold whole blocks of a row or a column: blocks 'along flat' need a tensors layout");
    return undefined;
  }
  const layoutIR =
    layoutC.layout.kind === "record"
      ? attempt(() => checkRecord(layoutC.layout as A.RecordLayout, block.size, scale.per, widths, diags))
      : attempt(() =>
          checkTensors(layoutC.layout as A.TensorsLayout, block, scale.per, widths, { scale: scale.dtype, ...(min ? { min: min.dtype } : {}) }, vectors(code, codebooks), diags),
        );
  if (!layoutIR) return undefined;

  const bitsPerWeight =
    layoutIR.kind === "record"
      ? (layoutIR.bytes * 8) / block.size
      : (code.bits * vectors(code, codebooks).tables) / vectors(code, codebooks).length +
        (scale.per === "block" ? (widths.scale! + (widths.zero ?? 0) + (widths.min ?? 0)) / block.size : 0);
  return {
    name: decl.name.name,
    code,
    block,
    scale,
    ...(zero ? { zero } : {}),
    ...(min ? { min } : {}),
    codebooks,
    layout: layoutIR,
    formula: formula(code, !!zero, !!min, codebooks),
    bitsPerWeight,
    loc: locOf(decl.name),
  };
}

function requiredHint(k: string): string {
  switch (k) {
    case "code": return "e.g. 'code u4 offset 8'";
    case "scale": return "e.g. 'scale f16'";
    default: return "e.g. 'layout record 18 { scale at 0  code[i] at 2 + i % 16 bit 4 * (i / 16) }'";
  }
}

function formula(code: { offset: number; lookup?: string }, zero: boolean, min: boolean, cbs: CodebookIR[]): string {
  let v = "q";
  const cb = cbs.find((b) => b.name === code.lookup);
  if (cb?.additive) v = `sum_m ${cb.name}[m, q_m, c % ${cb.shape[cb.shape.length - 1]}]`;
  else if (cb) v = `${cb.name}[q]`;
  else if (code.offset !== 0) v = `(q - ${code.offset})`;
  if (zero) v = `(${v} - zero)`;
  return `w = scale * ${v}${min ? " + min" : ""}`;
}

function checkCodebook(c: A.CodebookClause, diags: DiagnosticBag): CodebookIR {
  const dtype = floatType(c.type.base, diags, "a codebook");
  const shape = c.type.shape.map((e) => constInt(e, diags, "a codebook size"));
  if (shape.length === 0) fail(diags, c.type, `codebook '${c.name.name}' needs a shape, e.g. f32[16]`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (c.additive && c.values) fail(diags, c.values, "an additive codebook is read from the checkpoint and takes no values");
  if (c.additive && shape.length !== 3) {
    fail(diags, c.type, `an additive codebook is [tables, entries, vector length], e.g. f16[2, 256, 8]; '${c.name.name}' has ${shape.length} dimensions`);
  }
  let values: number[] | undefined;
  if (c.values) {
    values = c.values.items.map((e) => evalNumber(e, () => undefined, diags, "a codebook entry"));
    if (values.length !== count) {
      fail(diags, c.values, `codebook '${c.name.name}' is declared with ${count} entries but lists ${values.length}`);
    }
  } else if (!c.additive) {
    fail(diags, c.name, `codebook '${c.name.name}' needs its values (= [...]) or 'additive' (read from the checkpoint)`);
  }
  return { name: c.name.name, dtype, shape, additive: c.additive, ...(values ? { values } : {}), ...(c.tensor ? { tensor: c.tensor.value } : {}) };
}

function fieldName(id: A.Ident, widths: Record<Field, number | undefined>, diags: DiagnosticBag): Field {
  if (!(FIELDS as readonly string[]).includes(id.name)) {
    return fail(diags, id, `unknown layout field '${id.name}'`, "a layout places 'code', 'scale', 'zero' or 'min'");
  }
  const f = id.name as Field;
  if (widths[f] === undefined) fail(diags, id, `the layout places '${f}' but the format declares no '${f}' clause`);
  return f;
}

function requireAll(placed: Set<Field>, widths: Record<Field, number | undefined>, at: A.Node, diags: DiagnosticBag): void {
  for (const f of FIELDS) {
    if (widths[f] !== undefined && !placed.has(f)) fail(diags, at, `the layout does not place '${f}'`);
  }
}

function checkRecord(
  rec: A.RecordLayout,
  blockSize: number,
  per: string,
  widths: Record<Field, number | undefined>,
  diags: DiagnosticBag,
): RecordLayoutIR {
  if (per !== "block") fail(diags, rec, "a record layout holds one block per record, so its scale must be per block");
  const bytes = constInt(rec.bytes, diags, "a record size");
  if (bytes <= 0 || bytes > MAX_RECORD_BYTES) fail(diags, rec.bytes, `a record size is 1 to ${MAX_RECORD_BYTES} bytes, found ${bytes}`);
  const owner = new Array<string | undefined>(bytes * 8);
  const placed = new Set<Field>();
  const fields: RecordFieldIR[] = [];
  for (const f of rec.fields) {
    const name = fieldName(f.field, widths, diags);
    if (placed.has(name)) fail(diags, f.field, `'${name}' is placed twice`);
    placed.add(name);
    if (name === "code" && !f.index) fail(diags, f.field, "'code' is placed per element: write code[i] at ...");
    if (name !== "code" && f.index) fail(diags, f.index!, `'${name}' is one value per block and takes no index`);
    const ix = f.index?.name;
    const scope = (n: string) => (n === ix ? Sym.atom(n) : undefined);
    const start = evalSym(f.byte, scope, diags, "a byte position", true).scale(8).add(f.bit ? evalSym(f.bit, scope, diags, "a bit position", true) : Sym.int(0));
    fields.push({ field: name, bitExpr: start.toString(), ...(ix ? { index: ix } : {}) });
    const count = name === "code" ? blockSize : 1;
    const width = widths[name]!;
    for (let i = 0; i < count; i++) {
      const env = (n: string) => (n === ix ? i : undefined);
      const bit = evalNumber(f.byte, env, diags) * 8 + (f.bit ? evalNumber(f.bit, env, diags) : 0);
      const label = name === "code" ? `code[${i}]` : name;
      if (bit < 0 || bit + width > bytes * 8) {
        fail(diags, f.byte, `${label} occupies bits ${bit}..${bit + width - 1}, outside the ${bytes}-byte record`);
      }
      for (let k = bit; k < bit + width; k++) {
        if (owner[k] !== undefined) fail(diags, f.byte, `${label} overlaps ${owner[k]} at bit ${k} of the record`);
        owner[k] = label;
      }
    }
  }
  requireAll(placed, widths, rec, diags);
  return { kind: "record", bytes, fields };
}

/** How many codes make one weight (tables of an additive codebook) and how many weights one code covers. */
function vectors(code: { lookup?: string }, cbs: CodebookIR[]): { tables: number; length: number } {
  const cb = cbs.find((b) => b.name === code.lookup);
  return cb?.additive ? { tables: cb.shape[0]!, length: cb.shape[2]! } : { tables: 1, length: 1 };
}

/** Example sizes for the concrete check of a tensors layout. */
function exampleDims(blockSize: number): { out: number; in: number } {
  const unit = Math.max(64, blockSize);
  return { out: 16, in: 2 * unit };
}

function checkTensors(
  lay: A.TensorsLayout,
  block: { size: number; axis: "in" | "out" | "flat" },
  per: string,
  widths: Record<Field, number | undefined>,
  floats: { scale: FloatDType; min?: FloatDType },
  vec: { tables: number; length: number },
  diags: DiagnosticBag,
): { kind: "tensors"; fields: TensorFieldIR[] } {
  const placed = new Set<Field>();
  const fields: TensorFieldIR[] = [];
  const dims = exampleDims(block.size);
  const dimScope = (n: string) => (n === "in" || n === "out" ? Sym.atom(n) : undefined);
  // r: output row, c: input column, b: block of c; m: table of an additive codebook.
  const idxVars = new Set(vec.tables > 1 ? ["r", "c", "b", "m"] : ["r", "c", "b"]);
  for (const f of lay.fields) {
    const name = fieldName(f.field, widths, diags);
    if (placed.has(name)) fail(diags, f.field, `'${name}' is placed twice`);
    placed.add(name);
    const dt = f.type.base.name;
    if (!isDType(dt)) fail(diags, f.type.base, `unknown storage type '${dt}'`, "expected one of f32, f16, bf16, i32, i64, i16, i8, u8");
    const packed = f.bit !== undefined;
    const declared = name === "scale" ? floats.scale : name === "min" ? floats.min : undefined;
    if (!packed && declared !== undefined && dt !== declared) {
      fail(diags, f.type.base, `'${name}' is declared ${declared} but stored as ${dt}`);
    }
    if (packed && isFloatDType(dt)) fail(diags, f.type.base, `packed fields need an integer storage type, found '${dt}'`);
    if (name === "code" && !packed && (isFloatDType(dt) || DTYPE_BITS[dt as DType] !== widths.code)) {
      fail(diags, f.type.base, `${widths.code}-bit codes in '${dt}' storage need a bit position: ... bit EXPR`);
    }
    const shape = f.type.shape.map((e) => evalSym(e, dimScope, diags, "a storage dimension"));
    const posScope = (n: string) => (idxVars.has(n) || n === "in" || n === "out" ? Sym.atom(n) : undefined);
    const at = f.at.map((e) => evalSym(e, posScope, diags, "a storage index", true));
    if (at.length !== shape.length) fail(diags, f.type, `'${f.tensor.value}' has ${shape.length} dimensions but is indexed by ${at.length}`);
    const bit = f.bit ? evalSym(f.bit, posScope, diags, "a bit position", true) : undefined;
    fields.push({
      field: name,
      tensor: f.tensor.value,
      dtype: dt as DType,
      shape: shape.map(String),
      at: at.map(String),
      ...(bit ? { bit: bit.toString() } : {}),
    });
    // Concrete check on an example tensor: every element lands inside the storage, once.
    const cshape = f.type.shape.map((e) => evalNumber(e, (n) => (dims as Record<string, number>)[n], diags));
    const wordBits = DTYPE_BITS[dt as DType];
    const owner = new Map<string, string>();
    const perElement = name === "code";
    const tables = perElement ? vec.tables : 1;
    for (let r = 0; r < dims.out; r++) {
      for (let c = 0; c < dims.in; c++) {
        for (let m = 0; m < tables; m++) {
          const b = block.size > 0 ? Math.floor((block.axis === "in" ? c : block.axis === "out" ? r : r * dims.in + c) / block.size) : 0;
          const blockKey = block.axis === "in" ? `block (r=${r}, b=${b})` : block.axis === "out" ? `block (b=${b}, c=${c})` : `block ${b}`;
          const codeKey = vec.length > 1 || tables > 1 ? `(r=${r}, vector ${Math.floor(c / vec.length)}, table ${m})` : `(r=${r}, c=${c})`;
          const key = perElement ? codeKey : per === "row" ? `row ${r}` : per === "tensor" ? "the tensor" : blockKey;
          const env = (n: string) => ({ r, c, b, m, ...dims } as Record<string, number>)[n];
          const idx = f.at.map((e) => evalNumber(e, env, diags));
          idx.forEach((v, k) => {
            if (v < 0 || v >= cshape[k]!) {
              fail(diags, f.at[k]!, `${name} of element (r=${r}, c=${c}) lands at index ${v} of dimension ${k} of '${f.tensor.value}', which has size ${cshape[k]} (example shape out=${dims.out}, in=${dims.in})`);
            }
          });
          const bitPos = f.bit ? evalNumber(f.bit, env, diags) : 0;
          const width = widths[name]!;
          if (packed && (bitPos < 0 || bitPos + width > wordBits)) {
            fail(diags, f.bit!, `${name} of element (r=${r}, c=${c}) occupies bits ${bitPos}..${bitPos + width - 1} of a ${wordBits}-bit ${dt}`);
          }
          const slot = `${idx.join(",")}@${bitPos}`;
          const prev = owner.get(slot);
          if (prev !== undefined && prev !== key) {
            fail(diags, f.field, `${name} of ${key} and of ${prev} land in the same place of '${f.tensor.value}' [${idx.join(", ")}] bit ${bitPos}`);
          }
          owner.set(slot, key);
        }
      }
    }
  }
  requireAll(placed, widths, lay, diags);
  return { kind: "tensors", fields };
}
