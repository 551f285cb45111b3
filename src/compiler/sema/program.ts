/**
 * Loads a .qzo file and everything it imports into one Program: the parsed
 * files, and the format and model declarations by name. Import paths are
 * relative to the importing file; a cycle or a missing file is a diagnostic.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type * as A from "../syntax/ast.js";
import { parseSource } from "../syntax/parse.js";
import { DiagnosticBag } from "../diagnostics.js";
import { SourceFile } from "../source.js";

export interface Program {
  root: SourceFile;
  files: Map<string, A.File>;
  formats: Map<string, A.FormatDecl>;
  models: A.ModelDecl[];
  diagnostics: DiagnosticBag;
}

/** Reads a source file as text; a file that is not valid UTF-8 text is reported by the parser. */
export function readSource(path: string): SourceFile {
  return new SourceFile(path, readFileSync(path, "utf8"));
}

export function loadProgram(root: SourceFile): Program {
  const diagnostics = new DiagnosticBag();
  const program: Program = { root, files: new Map(), formats: new Map(), models: [], diagnostics };
  const visiting = new Set<string>();

  const visit = (file: SourceFile, key: string): void => {
    if (program.files.has(key)) return;
    visiting.add(key);
    const parsed = parseSource(file);
    diagnostics.items.push(...parsed.diagnostics.items);
    if (!parsed.ast) {
      visiting.delete(key);
      return;
    }
    program.files.set(key, parsed.ast);
    for (const imp of parsed.ast.imports) {
      const target = resolve(dirname(key), imp.path.value);
      if (visiting.has(target)) {
        diagnostics.error(imp.path.span, `import cycle: "${imp.path.value}" imports this file again`);
        continue;
      }
      if (!imp.path.value.endsWith(".qzo")) {
        diagnostics.error(imp.path.span, `cannot import "${imp.path.value}": an import names a .qzo file`);
        continue;
      }
      if (!existsSync(target) || !statSync(target).isFile()) {
        diagnostics.error(imp.path.span, `cannot import "${imp.path.value}": no such file ${target}`);
        continue;
      }
      const display = relativeDisplay(file.path, imp.path.value);
      visit(new SourceFile(display, readFileSync(target, "utf8")), target);
    }
    for (const d of parsed.ast.decls) {
      if (d.kind === "format") {
        const prev = program.formats.get(d.name.name);
        if (prev) diagnostics.error(d.name.span, `format '${d.name.name}' is declared twice`, `the first declaration is at ${where(prev.name)}`);
        else program.formats.set(d.name.name, d);
      } else if (key === resolve(root.path)) {
        program.models.push(d);
      }
    }
    visiting.delete(key);
  };

  visit(root, resolve(root.path));
  return program;
}

/** How an imported file is named in diagnostics: its path as the user would type it. */
function relativeDisplay(importer: string, importPath: string): string {
  const dir = dirname(importer);
  return dir === "." ? importPath : `${dir}/${importPath}`;
}

export function where(id: A.Ident): string {
  const { line, col } = id.span.file.position(id.span.start);
  return `${id.span.file.path}:${line}:${col}`;
}
