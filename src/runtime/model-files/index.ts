/** Model-file readers: GGUF, llama2.c, safetensors and Hugging Face directories. */
export * from "./common.js";
export * from "./gguf.js";
export * from "./llama2c.js";
export * from "./safetensors.js";
export * from "./hf.js";
