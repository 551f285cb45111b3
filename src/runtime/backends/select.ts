/**
 * `--device`: which backend runs a model. `cuda` is the generated CUDA (needs
 * nvcc to build and an NVIDIA GPU and driver to run), `cpu` the generated C++
 * (needs a C++ compiler and the native addon, both installed by `npm ci`),
 * `interp` the reference interpreter (slow, needs nothing). `auto` takes the
 * GPU when there is one, else the CPU kernels when they can be built for this
 * model, else the interpreter (with a note on stderr saying why); an error in
 * the input itself is reported as it is, never hidden behind a fallback.
 */
import { nativeAddonBuilt } from "../../native/index.js";
import { UnsupportedError } from "../../util/errors.js";
import type { BoundModel } from "../load/bind.js";
import { interpreterForward, type Forward } from "../infer/generate.js";
import type { Backend } from "./backend.js";
import { cudaAvailable } from "./cuda-device.js";
import { createInterpreterBackend } from "./interp-backend.js";
import { createKernelBackend } from "./kernel-backend.js";

export type Device = "auto" | "cuda" | "cpu" | "interp";
export const DEVICES: readonly Device[] = ["auto", "cuda", "cpu", "interp"];

export interface Selected {
  backend: Backend;
  /** The forward graph as a function, for generation. */
  forward: Forward;
  device: "cuda" | "cpu" | "interp";
}

/** `train`: the backend will run perturbed losses (see KernelBackendOptions.train). */
export function selectBackend(bound: BoundModel, loss: string, device: Device, opts: { train?: boolean } = {}): Selected {
  const train = opts.train === true;
  if (device === "cuda" || (device === "auto" && cudaAvailable().ok)) {
    const gpu = createKernelBackend(bound, "cuda", { loss, train });
    return { backend: gpu, forward: (t, b, s) => gpu.forward(t, b, s), device: "cuda" };
  }
  if (device === "cpu" || device === "auto") {
    try {
      if (!nativeAddonBuilt()) throw new UnsupportedError("the native addon is not built (run npm ci or npm run build:native)");
      const cpu = createKernelBackend(bound, "cpu", { loss, train });
      return { backend: cpu, forward: (t, b, s) => cpu.forward(t, b, s), device: "cpu" };
    } catch (e) {
      if (device === "cpu" || !(e instanceof UnsupportedError)) throw e;
      process.stderr.write(`qzo: note: running on the reference interpreter (slow), because ${e.message}\n`);
    }
  }
  const backend = createInterpreterBackend(bound, { loss });
  return { backend, forward: interpreterForward(bound.module, bound.weights), device: "interp" };
}
