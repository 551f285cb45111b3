#!/usr/bin/env node
/**
 * qzo: the runtime command. `generate` continues a prompt and `perplexity`
 * scores a text, on a llama2.c checkpoint, a GGUF file or a Hugging Face
 * directory; the spec is chosen from the file's architecture unless --spec
 * names one.
 */
import { existsSync, readFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import { generate } from "../runtime/infer/generate.js";
import { perplexity } from "../runtime/infer/perplexity.js";
import { bindModel } from "../runtime/load/bind.js";
import { modelTokenizer } from "../runtime/load/tokenizer.js";
import { QzoError } from "../util/errors.js";
import { collectSet, runCli } from "./run-cli.js";

function number(kind: "int" | "float", min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || (kind === "int" && !Number.isInteger(n)) || n < min) {
      throw new InvalidArgumentError(`expected ${kind === "int" ? "an integer" : "a number"} >= ${min}, found '${v}'`);
    }
    return n;
  };
}

interface ModelOpts {
  model: string;
  tokenizer?: string;
  spec?: string;
  set: Record<string, string>;
}

function modelOptions(c: Command): Command {
  return c
    .requiredOption("--model <path>", "llama2.c .bin, .gguf file, or Hugging Face directory")
    .option("--tokenizer <path>", "tokenizer file (tokenizer.bin, .model, tokenizer.json); GGUF and HF models carry their own")
    .option("--spec <file>", "the .qzo spec (default: models/<architecture>.qzo)")
    .option("--set <key=value>", "override a config entry (repeatable)", collectSet, {});
}

function load(o: ModelOpts) {
  const bound = bindModel(o.model, { ...(o.spec ? { spec: o.spec } : {}), set: o.set });
  return { bound, tok: modelTokenizer(bound.checkpoint, o.tokenizer) };
}

const program = new Command("qzo").description("QZO runtime: generation, evaluation and (soon) fine-tuning of quantized models").version("0.1.0");

modelOptions(program.command("generate").description("continue a prompt (greedy at temperature 0)"))
  .option("--prompt <text>", "the prompt", "")
  .option("-n, --steps <n>", "tokens to generate (BOS ends early)", number("int", 1), 256)
  .option("--temperature <t>", "sampling temperature; 0 is greedy", number("float", 0), 1)
  .option("--seed <s>", "sampling seed", number("int", 0), 0)
  .action((o: ModelOpts & { prompt: string; steps: number; temperature: number; seed: number }) => {
    const { bound, tok } = load(o);
    generate(bound.module, bound.weights, tok, {
      prompt: o.prompt,
      steps: o.steps,
      temperature: o.temperature,
      seed: o.seed,
      onText: (s) => process.stdout.write(s),
    });
    process.stdout.write("\n");
  });

modelOptions(program.command("perplexity").description("mean negative log-likelihood of a text, as one sequence after BOS"))
  .requiredOption("--text <file>", "the text file")
  .option("--json", "print one JSON line {tokens, nll, ppl}")
  .action((o: ModelOpts & { text: string; json?: boolean }) => {
    if (!existsSync(o.text)) throw new QzoError(`${o.text}: no such file`);
    const { bound, tok } = load(o);
    const r = perplexity(bound.module, bound.weights, tok, readFileSync(o.text, "utf8"), o.text);
    if (o.json) process.stdout.write(JSON.stringify(r) + "\n");
    else process.stdout.write(`tokens ${r.tokens}  nll ${r.nll.toFixed(6)} nats/token  ppl ${r.ppl.toFixed(4)}\n`);
  });

await runCli(program, process.argv);
