/**
 * The front end in one call: a .qzo file (and its imports) -> checked IR.
 * Files with formats only (no model) are checked too; they produce no module.
 */
import type * as A from "./syntax/ast.js";
import { CompileError, type Diagnostic } from "./diagnostics.js";
import type { FormatIR, ModuleIR } from "./ir/ir.js";
import { type ConfigOverrides, checkModel } from "./sema/check.js";
import { checkFormat } from "./sema/formats.js";
import { loadProgram, readSource } from "./sema/program.js";
import type { SourceFile } from "./source.js";

export interface CheckResult {
  /** The parsed root file (absent after a syntax error). */
  ast?: A.File;
  modules: ModuleIR[];
  /** Formats declared in the root file and its imports. */
  formats: FormatIR[];
  diagnostics: Diagnostic[];
}

export function checkSource(file: SourceFile, overrides: ConfigOverrides = {}): CheckResult {
  const program = loadProgram(file);
  const diags = program.diagnostics;
  const modules: ModuleIR[] = [];
  const formats: FormatIR[] = [];
  if (!diags.hasErrors) {
    if (program.models.length === 0) {
      for (const decl of program.formats.values()) {
        const f = checkFormat(decl, diags);
        if (f) formats.push(f);
      }
      if (Object.keys(overrides).length) {
        diags.error({ file, start: 0, end: 1 }, "config overrides given, but this file declares no model");
      }
    }
    for (const model of program.models) {
      const m = checkModel(program, model, overrides, diags);
      if (m) modules.push(m);
    }
    if (modules.length) formats.push(...modules[0]!.formats);
  }
  const ast = program.files.get([...program.files.keys()][0] ?? "");
  return { ...(ast ? { ast } : {}), modules, formats, diagnostics: diags.sorted() };
}

export function checkFile(path: string, overrides: ConfigOverrides = {}): CheckResult {
  return checkSource(readSource(path), overrides);
}

/** The checked module of a file that declares exactly one model; throws CompileError otherwise. */
export function compileModule(path: string, overrides: ConfigOverrides = {}): ModuleIR {
  const r = checkFile(path, overrides);
  if (r.diagnostics.length) throw new CompileError(r.diagnostics);
  if (r.modules.length !== 1) {
    throw new Error(`${path} declares ${r.modules.length} models; expected exactly one`);
  }
  return r.modules[0]!;
}
