/**
 * The specs and formats every backend is checked on (the CPU kernels against the interpreter, the
 * CUDA compile test, the GPU check): each shipped format in a small Llama, OPT with GPTQ, and the
 * fixture-only formats. `id` names a case in files, `name` in test titles.
 */
export const SMALL = { dim: 128, hidden: 256, n_layers: 2, n_heads: 4, n_kv_heads: 2, vocab: 256, seq_len: 64 };

export interface SpecCase {
  id: string;
  name: string;
  spec: string;
  overrides: Record<string, string | number>;
  /** The architectures the CUDA compile test builds its object for (default sm_80). */
  cudaArchs?: string[];
}

/** A diffusion transformer (models/sd3.qzo) at the size of the mmdit-tiny fixture, its block linears NF4. */
export const SD3_TINY = { n_layers: 2, n_heads: 2, head_dim: 16, joint_dim: 24, pooled_dim: 20, pos_max: 16, in_channels: 4 };

/** Specs whose graphs are not language models: compiled for CUDA here, checked against their own fixtures elsewhere. */
export const OTHER_SPEC_CASES: readonly SpecCase[] = [
  { id: "sd3-nf4", name: "sd3 nf4 (MMDiT: patches, joint attention, adaLN modulation)", spec: "models/sd3.qzo", overrides: { ...SD3_TINY, weight: "nf4" }, cudaArchs: ["90a"] },
];

export const SPEC_CASES: readonly SpecCase[] = [
  { id: "llama-q4_0", name: "llama q4_0", spec: "models/llama.qzo", overrides: { ...SMALL, weight: "q4_0" } },
  { id: "llama-q8_0-embq4_0", name: "llama q8_0 with a Q4_0 embedding table", spec: "models/llama.qzo", overrides: { ...SMALL, weight: "q8_0", embed: "q4_0" } },
  { id: "llama-q4_1", name: "llama q4_1 (min)", spec: "models/llama.qzo", overrides: { ...SMALL, weight: "q4_1" } },
  { id: "llama-gptq_int4", name: "llama gptq_int4 (zero-points, separate tensors)", spec: "models/llama.qzo", overrides: { ...SMALL, weight: "gptq_int4" } },
  { id: "llama-nf4", name: "llama nf4 (lookup table)", spec: "models/llama.qzo", overrides: { ...SMALL, weight: "nf4" } },
  { id: "llama-aqlm_2x8", name: "llama aqlm_2x8 (additive codebooks)", spec: "models/llama.qzo", overrides: { ...SMALL, weight: "aqlm_2x8" } },
  { id: "llama-f16-fallback", name: "llama f16 fallback for ffn_down", spec: "models/llama.qzo", overrides: { ...SMALL, hidden: 172, weight: "q4_0" } },
  {
    id: "opt-gptq_int4",
    name: "opt gptq_int4 (LayerNorm, biases, learned positions, ReLU)",
    spec: "models/opt.qzo",
    overrides: { dim: 128, hidden: 256, n_layers: 2, n_heads: 4, vocab: 256, max_positions: 64 },
  },
  { id: "tiny_q5", name: "fixture-only q5_sym", spec: "test/fixtures/specs/tiny_q5.qzo", overrides: {} },
  {
    id: "tiny_layouts",
    name: "fixture-only layouts: bf16 row scales, records along the rows with a min, packed signed zero-points",
    spec: "test/fixtures/specs/tiny_layouts.qzo",
    overrides: {},
  },
];
