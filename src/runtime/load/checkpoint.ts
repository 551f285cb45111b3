/**
 * One view of a model file of any supported family: its metadata by key, its
 * tensors by name, and a lazy reader of their bytes. The family decides which
 * checkpoint names and metadata keys of a spec apply (`gguf "..."`, `hf "..."`,
 * `llama2c "..."`).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { QzoError } from "../../util/errors.js";
import { type TensorInfo, readGguf, readHfModel, readLlama2cCheckpoint } from "../model-files/index.js";

export type Family = "gguf" | "hf" | "llama2c";

export interface Checkpoint {
  family: Family;
  path: string;
  /** A metadata value by key: GGUF keys, config.json keys, or llama2.c header fields. */
  meta(key: string): unknown;
  tensors: Map<string, TensorInfo>;
  read(name: string): Uint8Array;
  /** The architecture named by the file ("llama", "opt", ...), to choose a spec. */
  architecture: string;
}

/** diffusers models (config.json's `_class_name`, no `model_type`) by the shipped spec that reads them. */
const DIFFUSERS_CLASSES: Record<string, string> = { SD3Transformer2DModel: "sd3" };

export function openCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new QzoError(`${path}: no such file or directory`);
  if (statSync(path).isDirectory()) {
    const hf = readHfModel(path);
    const arch = String(hf.config["model_type"] ?? DIFFUSERS_CLASSES[String(hf.config["_class_name"])] ?? "");
    return {
      family: "hf",
      path,
      meta: (k) => hf.config[k],
      tensors: hf.tensors,
      read: (n) => hf.readTensorBytes(n),
      architecture: arch,
    };
  }
  if (magic(path) === "GGUF") {
    const g = readGguf(path);
    return {
      family: "gguf",
      path,
      meta: (k) => {
        const v = g.metadata[k];
        return typeof v === "bigint" ? Number(v) : v;
      },
      tensors: g.tensors,
      read: (n) => g.readTensorBytes(n),
      architecture: String(g.metadata["general.architecture"] ?? ""),
    };
  }
  const c = readLlama2cCheckpoint(path);
  return {
    family: "llama2c",
    path,
    meta: (k) => (c.metadata as unknown as Record<string, unknown>)[k],
    tensors: c.tensors,
    read: (n) => c.readTensorBytes(n),
    architecture: "llama",
  };
}

function magic(path: string): string {
  const fd = openSync(path, "r");
  try {
    const b = Buffer.alloc(4);
    const n = readSync(fd, b, 0, 4, 0);
    return b.subarray(0, n).toString("latin1");
  } finally {
    closeSync(fd);
  }
}
