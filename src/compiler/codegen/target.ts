/**
 * A code-generation target: from the pipeline's artifact to source files, and from those to a
 * shared library. Two implement it, CPU (C++ with OpenMP, built with g++) and CUDA (built with
 * nvcc); neither calls the other. Both print the same kernel programs and format readers, each
 * with one emitter per kernel op and its own templates and headers.
 */
import type { BuiltLibrary } from "../build/build-cpu.js";
import type { CudaBuildOptions } from "../build/build-cuda.js";
import type { Manifest } from "../abi.js";
import type { Artifact } from "../pipeline.js";

export type TargetName = "cpu" | "cuda";

export interface GeneratedFile {
  /** Relative to the build directory (the program at the top, headers under qzo/). */
  path: string;
  text: string;
}

export interface GeneratedCode {
  target: TargetName;
  /** The program first, then the headers it includes. */
  files: GeneratedFile[];
  manifest: Manifest;
}

export interface Target {
  readonly name: TargetName;
  /** The `--emit` stage that shows this target's source. */
  readonly stage: "cpp" | "cuda";
  /** The kernels of the artifact this target has no code for, as "op (IR nodes)". */
  unsupported(a: Artifact): string[];
  generate(a: Artifact): GeneratedCode;
  build(code: GeneratedCode, opts?: CudaBuildOptions): BuiltLibrary;
}
