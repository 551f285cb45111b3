/** The reference interpreter, its kernels and the reference QZO update. */
export {
  dequantize,
  perturbArray,
  runGraph,
  trainableTensors,
  type ParamValue,
  type Perturbation,
  type Tensor,
  type TrainableTensor,
  type WeightSource,
} from "./interpreter.js";
export * as kernels from "./ops.js";
export { applyUpdate, projectedGradient } from "./update.js";
