#!/usr/bin/env node
/**
 * qzoc: the compiler command. `check` validates specs, `compile` lowers a spec
 * and shows or writes each stage, `fmt` prints the canonical form of a spec.
 */
import { existsSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { Command, Option } from "commander";
import { checkFile } from "../compiler/check.js";
import { CompileError } from "../compiler/diagnostics.js";
import { moduleToJson } from "../compiler/ir/json.js";
import { printModule } from "../compiler/ir/print.js";
import { readSource } from "../compiler/sema/program.js";
import { parseSource } from "../compiler/syntax/parse.js";
import { prettyPrint } from "../compiler/syntax/pretty.js";
import { astToJson } from "../compiler/syntax/ast-json.js";
import type { TargetName } from "../compiler/codegen/target.js";
import { generateCode, TARGETS } from "../compiler/codegen/targets.js";
import { compileArtifact, defaultGraphs } from "../compiler/pipeline.js";
import { lowerToKernels } from "../compiler/kernels/lower.js";
import { runPasses } from "../compiler/kernels/passes/index.js";
import { printKernels } from "../compiler/kernels/print.js";
import { QzoError, UnsupportedError } from "../util/errors.js";
import { writeFileAtomic } from "../util/fs-atomic.js";
import { collectSet, runCli } from "./run-cli.js";

function requireFile(path: string): void {
  if (!existsSync(path)) throw new QzoError(`${path}: no such file`);
  if (!statSync(path).isFile()) throw new QzoError(`${path}: not a file`);
}

const STAGES = ["ast", "ir", "kernels", "cpp", "cuda"] as const;
type Stage = (typeof STAGES)[number];

/** The target whose generated source each code stage is. */
const STAGE_TARGET: Partial<Record<Stage, TargetName>> = { cpp: "cpu", cuda: "cuda" };

const program = new Command("qzoc")
  .description("Compiler for .qzo model and quantization-format specs")
  .version("0.1.0");

program
  .command("check")
  .description("parse and check specs; report every error")
  .argument("<files...>", ".qzo files")
  .option("--set <key=value>", "override a config entry (repeatable)", collectSet, {})
  .action((files: string[], opts: { set: Record<string, string> }) => {
    const errors = [];
    for (const f of files) {
      requireFile(f);
      const r = checkFile(f, opts.set);
      if (r.diagnostics.length) {
        errors.push(...r.diagnostics);
        continue;
      }
      const what = r.modules.length
        ? r.modules.map((m) => `model ${m.name}: ${m.params.length} parameters, ${m.graphs.length} graphs, ${m.train.trainable.length} trainable tensors`).join("; ")
        : r.formats.length
          ? `${r.formats.length} format${r.formats.length === 1 ? "" : "s"}: ${r.formats.map((x) => x.name).join(", ")}`
          : "no declarations";
      process.stdout.write(`${f}: ok (${what})\n`);
    }
    if (errors.length) throw new CompileError(errors);
  });

program
  .command("compile")
  .description("lower a spec and show or write its stages")
  .argument("<file>", ".qzo file")
  .addOption(new Option("--emit <stages>", "comma-separated stages to show: ast, ir, kernels (after each pass), cpp (the CPU target's C++), cuda (the CUDA target's .cu)").default("ir"))
  .addOption(new Option("--target <target>", "the code generator whose source the generated-code stages show").choices(Object.keys(TARGETS)))
  .option("--graphs <names>", "graphs to generate code for (default: the train loss and forward)")
  .option("-o, --out <dir>", "write the stages into DIR (<name>.ast.json, <name>.ir.txt/.ir.json, <name>.kernels.txt, <name>.cpp or <name>.cu with its headers under qzo/ and <name>.<target>.manifest.json)")
  .option("--set <key=value>", "override a config entry (repeatable)", collectSet, {})
  .action((file: string, opts: { emit: string; out?: string; set: Record<string, string>; graphs?: string; target?: TargetName }) => {
    const stages = opts.emit.split(",").map((s) => s.trim()) as Stage[];
    for (const s of stages) {
      if (!(STAGES as readonly string[]).includes(s)) throw new QzoError(`--emit: unknown stage '${s}' (stages: ${STAGES.join(", ")})`, 2);
      const t = STAGE_TARGET[s];
      if (t && opts.target && t !== opts.target) throw new QzoError(`--emit ${s} is the ${t} target's source, but --target is ${opts.target}; emit ${TARGETS[opts.target].stage}`, 2);
    }
    requireFile(file);
    const r = checkFile(file, opts.set);
    if (r.diagnostics.length) throw new CompileError(r.diagnostics);
    const name = basename(file).replace(/\.qzo$/, "");
    const outputs: { stage: Stage; file: string; text: string }[] = [];
    if (stages.includes("ast")) outputs.push({ stage: "ast", file: `${name}.ast.json`, text: astToJson(r.ast!) });
    if (stages.includes("ir")) {
      if (r.modules.length === 0) {
        const formats = r.formats.length ? ` (its formats check: ${r.formats.map((f) => f.name).join(", ")})` : "";
        throw new QzoError(`${file}: declares no model, so there is no IR${formats}`);
      }
      for (const m of r.modules) {
        outputs.push({ stage: "ir", file: `${name}.ir.txt`, text: printModule(m) });
        if (opts.out) outputs.push({ stage: "ir", file: `${name}.ir.json`, text: moduleToJson(m) });
      }
    }
    const codeStages = stages.filter((st) => STAGE_TARGET[st] !== undefined);
    if (stages.includes("kernels") || codeStages.length) {
      const m = r.modules[0];
      if (!m) throw new QzoError(`${file}: declares no model, so there are no kernels`);
      const graphs = opts.graphs ? opts.graphs.split(",").map((g) => g.trim()) : defaultGraphs(m);
      if (stages.includes("kernels")) {
        const text = graphs.map((g) => {
          const parts: string[] = [];
          runPasses(lowerToKernels(m, g), "fused", (pass, p) => parts.push(`# ---- after ${pass}\n${printKernels(p)}`));
          return parts.join("\n");
        });
        outputs.push({ stage: "kernels", file: `${name}.kernels.txt`, text: text.join("\n") });
      }
      const artifact = codeStages.length ? compileArtifact(m, { graphs }) : undefined;
      for (const st of codeStages) {
        const target = TARGETS[STAGE_TARGET[st]!];
        const code = (() => {
          try {
            return generateCode(artifact!, target.name);
          } catch (e) {
            throw e instanceof UnsupportedError ? new QzoError(`${e.message}; choose other --graphs`) : e;
          }
        })();
        const [program, ...headers] = code.files;
        outputs.push({ stage: st, file: `${name}.${st === "cuda" ? "cu" : "cpp"}`, text: program!.text });
        if (opts.out) {
          outputs.push(...headers.map((h) => ({ stage: st, file: h.path, text: h.text })));
          outputs.push({ stage: st, file: `${name}.${target.name}.manifest.json`, text: JSON.stringify(code.manifest, null, 1) + "\n" });
        }
      }
    }
    for (const o of outputs) {
      if (opts.out) {
        writeFileAtomic(join(opts.out, o.file), o.text);
        process.stdout.write(`wrote ${join(opts.out, o.file)}\n`);
      } else {
        process.stdout.write(o.text);
      }
    }
  });

program
  .command("fmt")
  .description("print specs in canonical form")
  .argument("<files...>", ".qzo files")
  .option("-w, --write", "rewrite the files in place")
  .option("--check", "exit 1 if a file is not in canonical form")
  .action((files: string[], opts: { write?: boolean; check?: boolean }) => {
    const errors = [];
    let unformatted = 0;
    for (const f of files) {
      requireFile(f);
      const src = readSource(f);
      const parsed = parseSource(src);
      if (!parsed.ast) {
        errors.push(...parsed.diagnostics.sorted());
        continue;
      }
      const text = prettyPrint(parsed.ast);
      if (opts.check) {
        if (text !== src.text) {
          unformatted++;
          process.stdout.write(`${f}: not in canonical form\n`);
        }
      } else if (opts.write) {
        if (text !== src.text) writeFileAtomic(f, text);
      } else {
        process.stdout.write(text);
      }
    }
    if (errors.length) throw new CompileError(errors);
    if (unformatted) throw new QzoError(`${unformatted} file${unformatted === 1 ? "" : "s"} not in canonical form (run qzoc fmt --write)`);
  });

await runCli(program, process.argv);
