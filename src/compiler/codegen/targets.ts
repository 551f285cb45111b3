/** The code-generation targets by name (`qzoc compile --target`, the runtime's backends). */
import { UnsupportedError } from "../../util/errors.js";
import type { Artifact } from "../pipeline.js";
import { cpuTarget } from "./cpu/target.js";
import { cudaTarget } from "./cuda/target.js";
import type { GeneratedCode, Target, TargetName } from "./target.js";

export const TARGETS: Readonly<Record<TargetName, Target>> = { cpu: cpuTarget, cuda: cudaTarget };

/** A target's code for an artifact; an UnsupportedError naming the first kernel the target lacks. */
export function generateCode(a: Artifact, target: TargetName): GeneratedCode {
  const t = TARGETS[target];
  const missing = t.unsupported(a);
  if (missing.length) throw new UnsupportedError(`${a.module.source}: the ${target.toUpperCase()} code generator has no kernel for ${missing[0]}`);
  return t.generate(a);
}
