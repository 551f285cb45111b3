/**
 * The `train` block: QZO hyperparameters with the paper's defaults
 * (../shared/QZO-NOTES.md section 3) and the selection of trainable tensors.
 *
 *   trainable = scales(linear) - scales("output") + weights("*norm*")
 *
 * scales(S) selects the quantization scales of quantized parameters, mins(S)
 * the minima of formats that have one, weights(S) whole float parameters; S is
 * a use kind (linear, embedding, all) or a glob over parameter names.
 */
import type * as A from "../syntax/ast.js";
import type { DiagnosticBag } from "../diagnostics.js";
import type { ParamIR, TrainHyperIR, TrainIR, TrainableIR } from "../ir/ir.js";
import { attempt, describeExpr, evalNumber, fail, suggest } from "./evaluate.js";

export const TRAIN_DEFAULTS: TrainHyperIR = {
  eps: 1e-3,
  epsMode: "absolute",
  lr: 1e-7,
  schedule: "constant",
  warmup: 0,
  clip: 100,
  directions: 1,
  z: "gaussian",
  tensorPeriod: 1,
  momentum: 0,
  stepSize: "constant",
  scaleFloor: 1e-7,
  batch: 16,
  steps: 20000,
  evalEvery: 4000,
  seed: 0,
};

type NumKey = "eps" | "lr" | "warmup" | "clip" | "directions" | "tensorPeriod" | "momentum" | "scaleFloor" | "batch" | "steps" | "evalEvery" | "seed";

const NUMERIC: Record<string, { key: NumKey; int: boolean; min: number; strict: boolean; below?: number }> = {
  eps: { key: "eps", int: false, min: 0, strict: true },
  lr: { key: "lr", int: false, min: 0, strict: true },
  warmup: { key: "warmup", int: true, min: 0, strict: false },
  clip: { key: "clip", int: false, min: 0, strict: true },
  directions: { key: "directions", int: true, min: 1, strict: false },
  tensor_period: { key: "tensorPeriod", int: true, min: 1, strict: false },
  momentum: { key: "momentum", int: false, min: 0, strict: false, below: 1 },
  scale_floor: { key: "scaleFloor", int: false, min: 0, strict: false },
  batch: { key: "batch", int: true, min: 1, strict: false },
  steps: { key: "steps", int: true, min: 1, strict: false },
  eval_every: { key: "evalEvery", int: true, min: 0, strict: false },
  seed: { key: "seed", int: true, min: 0, strict: false },
};

const ENUMS: Record<string, readonly string[]> = {
  schedule: ["constant", "linear", "cosine"],
  z: ["gaussian", "rademacher"],
  step_size: ["constant", "rms"],
};

/** The IR field of an enum setting. */
const ENUM_FIELD: Record<string, "schedule" | "z" | "stepSize"> = { schedule: "schedule", z: "z", step_size: "stepSize" };

export const TRAIN_KEYS = ["loss", "trainable", ...Object.keys(NUMERIC), ...Object.keys(ENUMS)];

/**
 * The model's train blocks: at most one unnamed block (the loss, the trainable selection and the
 * hyperparameters) and at most one `train LOSS { ... }` per loss, whose hyperparameters replace the
 * unnamed block's when training with that loss.
 */
export function checkTrain(
  blocks: A.TrainBlock[],
  model: A.ModelDecl,
  graphs: A.GraphDecl[],
  params: ParamIR[],
  failedParams: Set<string>,
  formatsWithMin: Set<string>,
  diags: DiagnosticBag,
): TrainIR | undefined {
  const losses = graphs.filter((g) => g.role === "loss").map((g) => g.name.name);
  const main = blocks.filter((b) => !b.loss);
  for (const extra of main.slice(1)) diags.error(extra.span, "a model has one train block (and at most one 'train LOSS { ... }' per loss)");
  const out: TrainIR = { ...TRAIN_DEFAULTS, loss: losses.includes("lm") ? "lm" : losses[0] ?? "", trainable: [], byLoss: {} };
  const trainableExpr = settings(main[0], losses, out, diags);
  for (const b of blocks.filter((x) => x.loss)) {
    const name = b.loss!;
    if (!losses.includes(name.name)) {
      diags.error(name.span, `'train ${name.name}' names no loss of this model (${losses.join(", ") || "it declares none"})`, suggest(name.name, losses));
      continue;
    }
    if (out.byLoss[name.name]) {
      diags.error(name.span, `the settings for loss '${name.name}' are given twice`);
      continue;
    }
    for (const s of b.settings) {
      if (s.key.name === "loss" || s.key.name === "trainable") {
        diags.error(s.key.span, `'${s.key.name}' belongs in the model's train block, not in 'train ${name.name}'`);
      }
    }
    // The loss's own settings: those of the train block that its block changes.
    const own: TrainIR = { ...out, byLoss: {} };
    settings(b, losses, own, diags);
    const changed: Record<string, unknown> = {};
    for (const key of Object.keys(TRAIN_DEFAULTS) as (keyof TrainHyperIR)[]) if (own[key] !== out[key]) changed[key] = own[key];
    out.byLoss[name.name] = changed as Partial<TrainHyperIR>;
  }
  const block = main[0];
  if (block && losses.length === 0) diags.error(block.span, `model '${model.name.name}' has a train block but no loss`, "declare one: loss lm(tokens: i32[B, T], mask: f32[B, T]) { ... }");
  const selected = trainableExpr ? attempt(() => selection(trainableExpr!, params, failedParams, formatsWithMin, diags)) : defaultSelection(params);
  if (!selected) return undefined;
  out.trainable = selected;
  return out;
}

/** Applies one block's settings to `out`; returns its trainable expression, if any. */
function settings(block: A.TrainBlock | undefined, losses: string[], out: TrainIR, diags: DiagnosticBag): A.Expr | undefined {
  let trainableExpr: A.Expr | undefined;
  const seen = new Set<string>();
  for (const s of block?.settings ?? []) {
    const key = s.key.name;
    if (seen.has(key)) {
      diags.error(s.key.span, `'${key}' is set twice`);
      continue;
    }
    seen.add(key);
    if (s.modifier && key !== "eps") diags.error(s.modifier.span, `'${s.modifier.name}' only applies to eps`);
    attempt(() => {
      if (key === "loss") {
        if (s.value.kind !== "name" || !losses.includes(s.value.name)) {
          const hint = s.value.kind === "name" ? suggest(s.value.name, losses) : undefined;
          fail(diags, s.value, `'loss' names a loss of this model (${losses.join(", ") || "it declares none"}), found ${describeExpr(s.value)}`, hint);
        }
        out.loss = s.value.name;
      } else if (key === "trainable") {
        trainableExpr = s.value;
      } else if (NUMERIC[key]) {
        const spec = NUMERIC[key];
        const v = evalNumber(s.value, () => undefined, diags, `'${key}'`);
        if (spec.int && !Number.isInteger(v)) fail(diags, s.value, `'${key}' must be an integer, found ${v}`);
        if (spec.strict ? v <= spec.min : v < spec.min) fail(diags, s.value, `'${key}' must be ${spec.strict ? "greater than" : "at least"} ${spec.min}, found ${v}`);
        if (spec.below !== undefined && v >= spec.below) fail(diags, s.value, `'${key}' must be below ${spec.below}, found ${v}`);
        out[spec.key] = v;
        if (key === "eps" && s.modifier) out.epsMode = s.modifier.name as "absolute" | "relative";
      } else if (ENUMS[key]) {
        const values = ENUMS[key];
        if (s.value.kind !== "name" || !values.includes(s.value.name)) {
          fail(diags, s.value, `'${key}' is one of ${values.join(", ")}, found ${describeExpr(s.value)}`);
        }
        (out as unknown as Record<string, string>)[ENUM_FIELD[key]!] = s.value.name;
      } else {
        fail(diags, s.key, `unknown training setting '${key}'`, suggest(key, TRAIN_KEYS) ?? `settings: ${TRAIN_KEYS.join(", ")}`);
      }
    });
  }
  return trainableExpr;
}

function defaultSelection(params: ParamIR[]): TrainableIR[] {
  return params.filter((p) => isQuantized(p) && p.uses.includes("linear")).map((p) => ({ param: p.name, field: "scale" }));
}

function isQuantized(p: ParamIR): boolean {
  return p.type.elem.kind === "quant" && p.resolved === p.type.elem.format;
}

const SELECTORS = ["scales", "mins", "weights"] as const;
const KINDS = ["linear", "embedding", "all"];

function selection(e: A.Expr, params: ParamIR[], failed: Set<string>, withMin: Set<string>, diags: DiagnosticBag): TrainableIR[] {
  if (e.kind === "binary" && (e.op === "+" || e.op === "-")) {
    const l = selection(e.left, params, failed, withMin, diags);
    const r = selection(e.right, params, failed, withMin, diags);
    const key = (t: TrainableIR) => `${t.param}.${t.field}`;
    if (e.op === "+") return [...l, ...r.filter((t) => !l.some((u) => key(u) === key(t)))];
    return l.filter((t) => !r.some((u) => key(u) === key(t)));
  }
  if (e.kind !== "call" || !(SELECTORS as readonly string[]).includes(e.callee.name)) {
    return fail(diags, e, `a trainable selection is built from ${SELECTORS.map((s) => `${s}(...)`).join(", ")} with + and -, found ${describeExpr(e)}`);
  }
  if (e.args.length !== 1 || e.named.length) fail(diags, e, `'${e.callee.name}' takes one argument: a kind (${KINDS.join(", ")}) or a name pattern in quotes`);
  const arg = e.args[0]!;
  let match: (p: ParamIR) => boolean;
  if (arg.kind === "name") {
    if (!KINDS.includes(arg.name)) fail(diags, arg, `unknown parameter kind '${arg.name}'`, `kinds: ${KINDS.join(", ")}; use quotes for a name pattern`);
    match = (p) => arg.name === "all" || p.uses.includes(arg.name);
  } else if (arg.kind === "string") {
    const re = new RegExp(`^${arg.value.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
    match = (p) => re.test(p.name);
    // A parameter whose declaration failed was reported already; do not call it missing.
    if (!params.some(match) && ![...failed].some((n) => re.test(n))) fail(diags, arg, `no parameter matches "${arg.value}"`, suggest(arg.value, params.map((p) => p.name)));
  } else {
    return fail(diags, arg, `'${e.callee.name}' takes a kind or a name pattern, found ${describeExpr(arg)}`);
  }
  const kind = e.callee.name as (typeof SELECTORS)[number];
  const picked = params.filter(match).filter((p) => {
    if (kind === "weights") return !isQuantized(p);
    if (kind === "mins") return isQuantized(p) && p.type.elem.kind === "quant" && withMin.has(p.type.elem.format);
    return isQuantized(p);
  });
  const field = kind === "scales" ? "scale" : kind === "mins" ? "min" : "weight";
  return picked.map((p) => ({ param: p.name, field }));
}
