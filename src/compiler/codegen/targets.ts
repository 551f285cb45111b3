/** The code-generation targets by name (`qzoc compile --target`, the runtime's backends). */
import { cpuTarget } from "./cpu/target.js";
import { cudaTarget } from "./cuda/target.js";
import type { Target, TargetName } from "./target.js";

export const TARGETS: Readonly<Record<TargetName, Target>> = { cpu: cpuTarget, cuda: cudaTarget };
