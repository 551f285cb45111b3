/**
 * `--device`: which backend runs a model. `cpu` is the generated C++ (needs a
 * C++ compiler and the native addon, both installed by `npm ci`), `interp` the
 * reference interpreter (slow, needs nothing), `auto` the CPU kernels when
 * they can be built and loaded, else the interpreter (with a note on stderr).
 */
import { nativeAddonBuilt } from "../../native/index.js";
import { QzoError } from "../../util/errors.js";
import type { BoundModel } from "../load/bind.js";
import { createInterpreterBackend } from "../train/interp-backend.js";
import { interpreterForward, type Forward } from "../infer/generate.js";
import type { Backend } from "../train/backend.js";
import { createCpuBackend } from "./cpu.js";

export type Device = "auto" | "cpu" | "interp";
export const DEVICES: readonly Device[] = ["auto", "cpu", "interp"];

export interface Selected {
  backend: Backend;
  /** The forward graph as a function, for generation. */
  forward: Forward;
  device: "cpu" | "interp";
}

export function selectBackend(bound: BoundModel, loss: string, device: Device): Selected {
  if (device === "cpu" || device === "auto") {
    try {
      if (!nativeAddonBuilt()) throw new QzoError("the native addon is not built (run npm ci or npm run build:native)");
      const cpu = createCpuBackend(bound, { loss });
      return { backend: cpu, forward: (t, b, s) => cpu.forward(t, b, s), device: "cpu" };
    } catch (e) {
      if (device === "cpu" || !(e instanceof QzoError)) throw e;
      process.stderr.write(`qzo: note: running on the reference interpreter (slow), because ${e.message}\n`);
    }
  }
  const backend = createInterpreterBackend(bound, { loss });
  return { backend, forward: interpreterForward(bound.module, bound.weights), device: "interp" };
}
