/**
 * A QZO Backend over the reference interpreter (src/runtime/interpret/interpreter.ts): slow, obviously
 * correct, and the oracle the fast backends are compared with.
 *
 * Master copies: one float32 array per trainable tensor (manifest order), taken from the model as bound:
 * the unpacked scales (or mins) of a quantized parameter, or the data of a float parameter. The loss is
 * runGraph(module, lossName, batch, W, perturb), where W serves each quantized parameter with its scales
 * (mins) replaced by the current masters and each float trainable by its master; the interpreter adds
 * the perturbation itself, so the masters are never touched by a forward pass. update() runs the
 * reference applyUpdate on every master, with the sign-preserving floor for "scale" tensors only.
 */
import { QzoError } from "../../util/errors.js";
import { runGraph, trainableTensors, type ParamValue, type TrainableTensor, type WeightSource } from "../interpret/interpreter.js";
import { applyUpdate } from "../interpret/update.js";
import type { BoundModel } from "../load/bind.js";
import { withScales } from "../quant/codec.js";
import type { Backend, Batch, PerturbSpec, UpdateSpec } from "./backend.js";

export interface InterpreterBackendOptions {
  /** The loss graph (default: the spec's train.loss). */
  loss?: string;
}

export interface InterpreterBackend extends Backend {
  /** The weights as the loss sees them now (quantized params with the master scales). */
  readonly weights: WeightSource;
}

function keyOf(param: string, layer: number | undefined): string {
  return `${param}#${layer ?? ""}`;
}

/** The initial master copy of one trainable tensor, from the model's own weights. */
function initialValue(v: ParamValue, tt: TrainableTensor): Float32Array {
  const where = tt.layer === undefined ? tt.param : `${tt.param}[${tt.layer}]`;
  if (tt.field === "weight") {
    if (v.kind !== "float") throw new QzoError(`trainable ${where}.weight: the parameter is quantized (${v.tensor.format.name}); train its scales instead`);
    return new Float32Array(v.data);
  }
  if (v.kind !== "quant") throw new QzoError(`trainable ${where}.${tt.field}: the parameter is not quantized`);
  if (tt.field === "scale") return new Float32Array(v.tensor.scales);
  if (!v.tensor.mins) throw new QzoError(`trainable ${where}.min: format ${v.tensor.format.name} has no mins`);
  return new Float32Array(v.tensor.mins);
}

export function createInterpreterBackend(bound: BoundModel, opts: InterpreterBackendOptions = {}): InterpreterBackend {
  const m = bound.module;
  const lossName = opts.loss ?? m.train.loss;
  const g = m.graphs.find((x) => x.name === lossName);
  if (!g) throw new QzoError(`${bound.spec}: no loss graph '${lossName}' (graphs: ${m.graphs.map((x) => x.name).join(", ")})`);
  const trainables = trainableTensors(m);
  const base = bound.weights;
  let masters = trainables.map((tt) => initialValue(base.get(tt.param, tt.layer), tt));
  // (param, layer) -> the trainable tensor numbers that touch it, by field.
  const byParam = new Map<string, Partial<Record<TrainableTensor["field"], number>>>();
  for (const tt of trainables) {
    const k = keyOf(tt.param, tt.layer);
    const e = byParam.get(k) ?? {};
    e[tt.field] = tt.t;
    byParam.set(k, e);
  }

  const weights: WeightSource = {
    get(param, layer) {
      const v = base.get(param, layer);
      const e = byParam.get(keyOf(param, layer));
      if (!e) return v;
      if (v.kind === "float") return e.weight === undefined ? v : { kind: "float", shape: v.shape, data: masters[e.weight]! };
      let tensor = v.tensor;
      if (e.scale !== undefined) tensor = withScales(tensor, masters[e.scale]!);
      if (e.min !== undefined) tensor = { ...tensor, mins: masters[e.min]! };
      return { kind: "quant", tensor };
    },
  };

  const scalarOf = (data: ArrayLike<number>): number => {
    if (data.length !== 1) throw new QzoError(`${lossName}: the loss graph returned ${data.length} values, expected a scalar`);
    return data[0]!;
  };

  return {
    name: "interpreter",
    trainables,
    weights,
    loss(batch: Batch, perturb?: PerturbSpec): number {
      return scalarOf(runGraph(m, lossName, batch, weights, perturb).data);
    },
    update(u: UpdateSpec): void {
      for (const tt of trainables) {
        applyUpdate(masters[tt.t]!, tt.t, u.seedLo, u.seedHi, u.d, u.lr, u.dist, u.epsMode, tt.field === "scale" ? u.floor : 0, u.period ?? 1);
      }
    },
    values(): readonly Float32Array[] {
      return masters;
    },
    setValues(values: readonly Float32Array[]): void {
      if (values.length !== masters.length) throw new QzoError(`${values.length} trainable tensors given, the model has ${masters.length}`);
      values.forEach((v, t) => {
        if (v.length !== masters[t]!.length) throw new QzoError(`trainable tensor ${t}: ${v.length} values given, expected ${masters[t]!.length}`);
      });
      masters = values.map((v) => new Float32Array(v));
    },
  };
}
