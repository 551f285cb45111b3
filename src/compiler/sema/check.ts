/**
 * Semantic analysis of a model: config, parameters, graphs and the train
 * block, checked and lowered to the typed IR (../ir/ir.ts) in one walk.
 * Errors are collected, not thrown, so one run reports every error of a file.
 */
import type * as A from "../syntax/ast.js";
import type { DiagnosticBag } from "../diagnostics.js";
import {
  type ConfigEntryIR, type ConfigValue, type DType, type FloatDType, type FormatIR, type GraphIR, type ModuleIR,
  type ParamIR, type SourceNameIR, type TensorType, isDType, isFloatDType,
} from "../ir/ir.js";
import { tryEvalIntExpr } from "../ir/int-expr.js";
import { Sym } from "../ir/symbolic.js";
import { expr as printExpr } from "../syntax/pretty.js";
import { EvalFailed, type SymScope, attempt, describeExpr, evalNumber, evalSym, fail, suggest } from "./evaluate.js";
import { checkFormat } from "./formats.js";
import { locOf } from "./loc.js";
import type { CType } from "./ops.js";
import type { Program } from "./program.js";
import { checkTrain } from "./train.js";
import { lowerGraph } from "./graph.js";

/** Config values given from outside (command line, checkpoint metadata). */
export type ConfigOverrides = Record<string, string | number>;

interface ConfigSym {
  entry: A.ConfigEntry;
  type: "int" | "float" | "format";
  number?: number;
  storage?: string;
  /** Ints: the symbolic value (an atom for a base entry, the expansion for a derived one). */
  sym?: Sym;
}

interface ParamSym {
  decl: A.ParamDecl;
  ir: ParamIR;
  ctype: CType;
}

export function checkModel(
  program: Program,
  model: A.ModelDecl,
  overrides: ConfigOverrides,
  diags: DiagnosticBag,
): ModuleIR | undefined {
  const formats = new Map<string, FormatIR>();
  for (const [name, decl] of program.formats) {
    const f = checkFormat(decl, diags);
    if (f) formats.set(name, f);
  }
  const c = new ModelChecker(program, model, formats, diags);
  return c.run(overrides);
}

export class ModelChecker {
  private config = new Map<string, ConfigSym>();
  private params = new Map<string, ParamSym>();
  /** Parameters whose declaration had errors: uses of them are not reported again. */
  readonly failedParams = new Set<string>();
  private graphs = new Map<string, A.GraphDecl>();
  private configIR: ConfigEntryIR[] = [];
  /** Config entries whose definition had errors: uses of them are not reported again. */
  private failedConfig = new Set<string>();

  constructor(
    private readonly program: Program,
    private readonly model: A.ModelDecl,
    private readonly formats: Map<string, FormatIR>,
    private readonly diags: DiagnosticBag,
  ) {}

  run(overrides: ConfigOverrides): ModuleIR | undefined {
    const configs = this.model.items.filter((i): i is A.ConfigBlock => i.kind === "config");
    for (const extra of configs.slice(1)) this.diags.error(extra.span, "a model has one config block", "merge the entries into the first");
    this.checkConfig(configs[0]?.entries ?? [], overrides);
    for (const item of this.model.items) {
      if (item.kind === "param") this.checkParam(item, undefined);
      if (item.kind === "param_loop") this.checkParamLoop(item);
      if (item.kind === "graph") {
        const prev = this.graphs.get(item.name.name);
        if (prev) this.diags.error(item.name.span, `graph '${item.name.name}' is declared twice`);
        else this.graphs.set(item.name.name, item);
      }
    }
    const graphs: GraphIR[] = [];
    for (const g of this.graphs.values()) {
      const ir = attempt(() => lowerGraph(this, g));
      if (ir) graphs.push(ir);
    }
    const trains = this.model.items.filter((i): i is A.TrainBlock => i.kind === "train");
    const train = checkTrain(trains, this.model, [...this.graphs.values()], [...this.params.values()].map((p) => p.ir), this.failedParams, new Set([...this.formats.values()].filter((f) => f.min).map((f) => f.name)), this.diags);
    if (this.diags.hasErrors || !train) return undefined;
    return {
      name: this.model.name.name,
      source: this.program.root.path,
      config: this.configIR,
      formats: [...this.formats.values()],
      params: [...this.params.values()].map((p) => p.ir),
      graphs,
      train,
    };
  }

  // ---------------------------------------------------------------- config

  private checkConfig(entries: A.ConfigEntry[], overrides: ConfigOverrides): void {
    const unknown = Object.keys(overrides).filter((k) => !entries.some((e) => e.name.name === k));
    for (const k of unknown) {
      this.diags.error(this.model.name.span, `config override '${k}' names no entry of model '${this.model.name.name}'`, suggest(k, entries.map((e) => e.name.name)));
    }
    for (const e of entries) {
      const name = e.name.name;
      if (this.config.has(name)) {
        this.diags.error(e.name.span, `config entry '${name}' is declared twice`);
        continue;
      }
      const type = e.type.name;
      if (type !== "int" && type !== "float" && type !== "format") {
        this.diags.error(e.type.span, `unknown config type '${type}'`, "a config entry is 'int', 'float' or 'format'");
        continue;
      }
      const over = overrides[name];
      let entry = attempt(() => this.configEntry(e, type, over));
      // A bad override is reported once; the entry keeps its default so its uses check normally.
      if (!entry && over !== undefined) entry = attempt(() => this.configEntry(e, type, undefined));
      if (entry) this.config.set(name, entry);
      else this.failedConfig.add(name);
    }
  }

  private configEntry(e: A.ConfigEntry, type: "int" | "float" | "format", over: string | number | undefined): ConfigSym {
    const name = e.name.name;
    const exprText = printExpr(e.value);
    if (type === "format") {
      const value = over !== undefined ? String(over) : this.storageName(e.value);
      if (over !== undefined && !this.isStorage(value)) {
        fail(this.diags, this.model.name, `config override ${name}=${value} is not a format or float dtype`, this.storageHint(value));
      }
      this.configIR.push({ name, value: { type, value, expr: exprText }, sources: this.metadataSources(e), loc: locOf(e.name) });
      return { entry: e, type, storage: value };
    }
    const num = over !== undefined ? Number(over) : evalNumber(e.value, (n) => this.configNumber(n, e.value), this.diags, `config entry '${name}'`);
    if (over !== undefined && (Number.isNaN(num) || (type === "int" && !Number.isInteger(num)))) {
      fail(this.diags, this.model.name, `config override ${name}=${over} is not ${type === "int" ? "an integer" : "a number"}`);
    }
    if (type === "int" && !Number.isInteger(num)) fail(this.diags, e.value, `config entry '${name}' is an int but its value is ${num}`);
    if (!Number.isFinite(num) || (type === "int" && !Number.isSafeInteger(num))) {
      const where = over !== undefined ? this.model.name : e.value;
      fail(this.diags, where, `config entry '${name}' is ${num}${over !== undefined ? ` (from ${over})` : ""}; ${type === "int" ? "an int must lie between -2^53 and 2^53" : "a float must be finite"}`);
    }
    let sym: Sym | undefined;
    let expansion: string | undefined;
    if (type === "int") {
      const derived = over === undefined && e.value.kind !== "number";
      const scope = Object.assign((n: string) => this.config.get(n)?.sym, { concrete: this.concrete });
      sym = derived ? evalSym(e.value, scope, this.diags, `config entry '${name}'`) : Sym.atom(name);
      if (derived) expansion = sym.toString();
    }
    const value: ConfigValue = { type, value: num, expr: over !== undefined ? String(over) : exprText };
    this.configIR.push({ name, value, ...(expansion ? { expansion } : {}), sources: this.metadataSources(e), loc: locOf(e.name) });
    return { entry: e, type, number: num, ...(sym ? { sym } : {}) };
  }

  /** `{ gguf "llama.embedding_length"  hf "hidden_size" }` on a config entry. */
  private metadataSources(e: A.ConfigEntry): Record<string, SourceNameIR[]> {
    const out: Record<string, SourceNameIR[]> = {};
    for (const s of e.sources) {
      if (out[s.family.name]) {
        this.diags.error(s.family.span, `config entry '${e.name.name}' names a '${s.family.name}' source twice`, "list alternatives with 'or'");
        continue;
      }
      out[s.family.name] = s.names.map((n) => {
        if (n.index) this.diags.error(n.index.span, "a metadata key takes no index");
        for (const t of n.transforms) {
          if (t.callee.name !== "length" || t.args.length || t.named.length) {
            this.diags.error(t.span, `unknown metadata transform '${t.callee.name}'`, "metadata keys take '| length()' (the length of an array)");
          }
        }
        return { tensor: n.tensor.value, transforms: n.transforms.map((t) => ({ name: t.callee.name, args: [] })) };
      });
    }
    return out;
  }

  private configNumber(n: string, at: A.Node): number | undefined {
    if (this.failedConfig.has(n)) throw new EvalFailed("config entry with errors");
    const c = this.config.get(n);
    if (!c) return undefined;
    if (c.number === undefined) fail(this.diags, at, `config entry '${n}' is a format, not a number`);
    return c.number;
  }

  private isStorage(s: string): boolean {
    return this.formats.has(s) || isFloatDType(s) || this.program.formats.has(s);
  }

  private storageHint(s: string): string | undefined {
    const formats = [...this.program.formats.keys()];
    if (formats.length === 0) return `no format is declared or imported: import one, e.g. import "formats/gguf.qzo", or use f32, f16 or bf16`;
    return suggest(s, [...formats, "f32", "f16", "bf16"]) ?? `known formats: ${formats.join(", ")}; or f32, f16, bf16`;
  }

  /** A format-typed config value: a format name, a float dtype, or another format entry. */
  private storageName(e: A.Expr): string {
    if (e.kind !== "name") return fail(this.diags, e, `a format entry takes a format or dtype name, found ${describeExpr(e)}`);
    const c = this.config.get(e.name);
    if (c?.type === "format") return c.storage!;
    if (this.isStorage(e.name)) return e.name;
    return fail(this.diags, e, `unknown format '${e.name}'`, this.storageHint(e.name));
  }

  /** Resolves a type's base: a dtype, a format, or a format entry of the config. */
  resolveStorage(id: A.Ident): string {
    if (this.failedConfig.has(id.name)) throw new EvalFailed("config entry with errors");
    const c = this.config.get(id.name);
    if (c?.type === "format") return c.storage!;
    if (isDType(id.name) || this.program.formats.has(id.name)) return id.name;
    const hint =
      suggest(id.name, [...this.program.formats.keys(), "f32", "f16", "bf16", "i32"]) ??
      (this.program.formats.size === 0
        ? `a type is a dtype (f32, f16, bf16, i32...) or a format, and no format is declared or imported: import one, e.g. import "formats/gguf.qzo"`
        : "a type is a dtype (f32, f16, bf16, i32...), a format, or a config entry of type format");
    return fail(this.diags, id, `unknown type '${id.name}'`, hint);
  }

  /** Symbolic value of a config name inside shapes (ints only). */
  configSym(name: string, at: A.Node): Sym | undefined {
    if (this.failedConfig.has(name)) throw new EvalFailed("config entry with errors");
    const c = this.config.get(name);
    if (!c) return undefined;
    if (!c.sym) fail(this.diags, at, `config entry '${name}' is a ${c.type}, not an int, and cannot be a dimension`);
    return c.sym;
  }

  /** The scope of shape expressions outside graphs: the int config entries. */
  configScope(at: A.Node): SymScope {
    return Object.assign((n: string) => this.configSym(n, at), {
      names: () => [...this.config.entries()].filter(([, c]) => c.sym).map(([n]) => n),
      concrete: this.concrete,
    });
  }

  configValue(name: string): number | undefined {
    return this.config.get(name)?.number;
  }

  /** Concrete value of a dimension with the config defaults (undefined if it has free symbols). */
  concrete = (d: Sym): number | undefined => {
    const env = new Map<string, number>();
    for (const [name, c] of this.config) if (c.sym && c.number !== undefined) env.set(name, c.number);
    return tryEvalIntExpr(d.toString(), env);
  };

  /** Canonical form a person reads: a dimension equal to a derived config entry prints as its name. */
  show = (d: Sym): string => {
    const text = d.toString();
    if (this.config.has(text)) return text;
    for (const e of this.configIR) if (e.expansion === text) return e.name;
    return text;
  };

  // ---------------------------------------------------------------- params

  private checkParamLoop(loop: A.ParamLoop): void {
    const from = attempt(() => evalSym(loop.from, this.configScope(loop.from), this.diags, "a loop bound"));
    const to = attempt(() => evalSym(loop.to, this.configScope(loop.to), this.diags, "a loop bound"));
    const [lo, hi] = [from && this.concrete(from), to && this.concrete(to)];
    if (lo !== undefined && hi !== undefined && (lo < 0 || hi - lo < 0 || hi - lo > MAX_LAYERS)) {
      this.diags.error(loop.to.span, `the layers ${lo}..${hi} of '${loop.var.name}' are ${hi - lo}; parameter arrays have 0 to ${MAX_LAYERS} layers from 0 on`);
      for (const p of loop.params) this.failedParams.add(p.name.name);
      return;
    }
    for (const p of loop.params) {
      if (!p.index || p.index.name !== loop.var.name) this.failedParams.add(p.name.name);
      if (!p.index) {
        this.diags.error(p.name.span, `parameter '${p.name.name}' is declared in a loop over '${loop.var.name}' but not indexed by it`, `write: param ${p.name.name}[${loop.var.name}]: ...`);
        continue;
      }
      if (p.index.name !== loop.var.name) {
        this.diags.error(p.index.span, `parameter '${p.name.name}' is indexed by '${p.index.name}' but the loop variable is '${loop.var.name}'`);
        continue;
      }
      if (from && to) this.checkParam(p, { var: loop.var.name, from: from.toString(), to: to.toString() });
    }
  }

  private checkParam(p: A.ParamDecl, array: ParamIR["array"] | undefined): void {
    const name = p.name.name;
    if (this.params.has(name)) {
      this.diags.error(p.name.span, `parameter '${name}' is declared twice`);
      return;
    }
    if (p.index && !array) {
      this.failedParams.add(name);
      this.diags.error(p.index.span, `parameter '${name}' is indexed by '${p.index.name}' outside a 'for ${p.index.name} in ...' block`);
      return;
    }
    const ok = attempt(() => {
      const storage = this.resolveStorage(p.type.base);
      const shape = p.type.shape.map((e) => evalSym(e, this.configScope(e), this.diags, "a dimension"));
      if (shape.length === 0) fail(this.diags, p.type, `parameter '${name}' needs a shape, e.g. f32[dim]`);
      shape.forEach((d, k) => {
        const n = this.concrete(d);
        if (n !== undefined && n < 1) fail(this.diags, p.type.shape[k]!, `dimension ${this.show(d)} of parameter '${name}' is ${n}; a dimension must be positive`);
      });
      let fallback: FloatDType | undefined;
      if (p.type.fallback) {
        if (!isFloatDType(p.type.fallback.name)) fail(this.diags, p.type.fallback, `a fallback storage is a float dtype (f32, f16, bf16), found '${p.type.fallback.name}'`);
        fallback = p.type.fallback.name;
      }
      const fmt = this.formats.get(storage);
      let resolved = storage;
      if (this.program.formats.has(storage) && !fmt) fail(this.diags, p.type.base, `format '${storage}' has errors (reported above)`);
      if (fmt) {
        if (shape.length !== 2) fail(this.diags, p.type, `a quantized parameter is a matrix [out, in], but '${name}' has ${shape.length} dimensions`);
        const axisDim = fmt.block.axis === "in" ? shape[1]! : shape[0]!;
        const n = this.concrete(axisDim);
        // Blocks along the flattened tensor fit any shape (the last block may be short).
        if (fmt.block.size > 0 && fmt.block.axis !== "flat" && n !== undefined && n % fmt.block.size !== 0) {
          if (fallback) resolved = fallback;
          else {
            fail(
              this.diags, p.type,
              `format '${storage}' quantizes blocks of ${fmt.block.size} along ${fmt.block.axis}, which does not divide ${fmt.block.axis} = ${this.show(axisDim)} = ${n} of parameter '${name}'`,
              `declare a fallback storage for such shapes: ${p.type.base.name}[...] or f16`,
            );
          }
        }
      }
      const type: TensorType = {
        elem: fmt ? { kind: "quant", format: storage } : { kind: "dtype", dtype: storage as DType },
        shape: shape.map(String),
      };
      const ir: ParamIR = {
        name,
        type,
        resolved,
        sources: this.checkSources(p, array),
        uses: [],
        loc: locOf(p.name),
        ...(array ? { array } : {}),
        ...(fallback ? { fallback } : {}),
        ...(this.config.get(p.type.base.name)?.type === "format" ? { storageEntry: p.type.base.name } : {}),
      };
      this.params.set(name, { decl: p, ir, ctype: { elem: type.elem, shape } });
      return true;
    });
    if (!ok) this.failedParams.add(name);
  }

  private checkSources(p: A.ParamDecl, array: ParamIR["array"] | undefined): Record<string, SourceNameIR[]> {
    const out: Record<string, SourceNameIR[]> = {};
    for (const s of p.sources) {
      const fam = s.family.name;
      if (out[fam]) {
        this.diags.error(s.family.span, `parameter '${p.name.name}' names a '${fam}' source twice`, "list alternatives with 'or'");
        continue;
      }
      out[fam] = s.names.map((n) => {
        for (const m of n.tensor.value.matchAll(/\{([^}]*)\}/g)) {
          if (!array || m[1] !== array.var) {
            this.diags.error(n.tensor.span, `'{${m[1]}}' in a tensor name must be the loop variable${array ? ` '${array.var}'` : ", but this parameter is not in a loop"}`);
          }
        }
        const index = n.index && attempt(() => evalSym(n.index!, (v) => (array && v === array.var ? Sym.atom(v) : this.configSym(v, n.index!)), this.diags, "a layer index"));
        const transforms = n.transforms.map((t) => {
          const spec = TRANSFORMS[t.callee.name];
          if (!spec) {
            this.diags.error(t.callee.span, `unknown load transform '${t.callee.name}'`, `known transforms: ${Object.keys(TRANSFORMS).join(", ")}`);
          } else if (t.args.length !== spec.args || t.named.length > 0) {
            this.diags.error(t.span, `'${t.callee.name}' takes ${spec.args} argument${spec.args === 1 ? "" : "s"} (${spec.doc})`);
          }
          const args = t.args.map((a) => attempt(() => evalSym(a, this.configScope(a), this.diags, "a transform argument"))?.toString() ?? "?");
          return { name: t.callee.name, args };
        });
        return { tensor: n.tensor.value, transforms, ...(index ? { index: index.toString() } : {}) };
      });
    }
    return out;
  }

  param(name: string): ParamSym | undefined {
    return this.params.get(name);
  }

  paramNames(): string[] {
    return [...this.params.keys()];
  }

  graph(name: string): A.GraphDecl | undefined {
    return this.graphs.get(name);
  }

  graphNames(): string[] {
    return [...this.graphs.keys()];
  }

  get diagnostics(): DiagnosticBag {
    return this.diags;
  }
}

/** The most layers a parameter array may have (the largest published LLMs have about 130). */
export const MAX_LAYERS = 4096;

/** Transforms applied to a checkpoint tensor while loading it. */
export const TRANSFORMS: Record<string, { args: number; doc: string }> = {
  unpermute_rope: { args: 1, doc: "heads: reorder each head's rows from rotate-half (Hugging Face) to interleaved pairs" },
  permute_rope: { args: 1, doc: "heads: reorder each head's rows from interleaved pairs to rotate-half" },
  transpose: { args: 0, doc: "swap the two dimensions of a matrix" },
  flatten: { args: 0, doc: "read a tensor [N, ...] as [N, rest] in the same order (a convolution's [out, in, kh, kw] weight as a matrix)" },
};

