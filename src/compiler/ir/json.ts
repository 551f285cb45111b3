/**
 * JSON serialization of the IR. The IR is plain data, so the encoding is the
 * data itself inside a small envelope with a version; decoding checks the
 * envelope and the shape of the module so that a stale or foreign file is
 * rejected with a clear message instead of failing later.
 */
import type { ModuleIR } from "./ir.js";
import { QzoError } from "../../util/errors.js";

export const IR_VERSION = 2;

export function moduleToJson(m: ModuleIR): string {
  return JSON.stringify({ qzoIR: IR_VERSION, module: m }, null, 1) + "\n";
}

export function moduleFromJson(text: string, file = "<ir>"): ModuleIR {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new QzoError(`${file}: not JSON: ${(e as Error).message}`);
  }
  const env = doc as { qzoIR?: unknown; module?: Partial<ModuleIR> };
  if (typeof env !== "object" || env === null || env.qzoIR === undefined) {
    throw new QzoError(`${file}: not a qzo IR file (no "qzoIR" version field)`);
  }
  if (env.qzoIR !== IR_VERSION) {
    throw new QzoError(`${file}: IR version ${String(env.qzoIR)}, expected ${IR_VERSION}; recompile the spec`);
  }
  const m = env.module;
  const missing = ["name", "config", "formats", "params", "graphs", "train"].filter((k) => !m || !(k in m));
  if (missing.length) throw new QzoError(`${file}: IR module lacks ${missing.join(", ")}`);
  return m as ModuleIR;
}
