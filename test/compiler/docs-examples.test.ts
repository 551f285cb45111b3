/**
 * Every ```qzo block of docs/LANGUAGE.md is a complete file: it must check
 * without errors, and the canonical printer (`qzoc fmt`) must print it back
 * to the same syntax tree (spans aside).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { checkSource } from "../../src/compiler/check.js";
import { diagnosticHeadline } from "../../src/compiler/diagnostics.js";
import { parseSource } from "../../src/compiler/syntax/parse.js";
import { prettyPrint } from "../../src/compiler/syntax/pretty.js";
import { SourceFile } from "../../src/compiler/source.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DOC = join(ROOT, "docs", "LANGUAGE.md");

interface Example {
  line: number;
  text: string;
}

/** The ```qzo blocks of a markdown text, with the line each starts on. */
function qzoBlocks(md: string): Example[] {
  const out: Example[] = [];
  const lines = md.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== "```qzo") continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && lines[j]!.trim() !== "```") j++;
    out.push({ line: start + 1, text: lines.slice(start, j).join("\n") + "\n" });
    i = j;
  }
  return out;
}

/** A copy of an AST with every `span` removed, for comparing trees. */
function stripSpans(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripSpans);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (k !== "span") out[k] = stripSpans(x);
    return out;
  }
  return v;
}

const examples = qzoBlocks(readFileSync(DOC, "utf8"));
// Each example is checked as if it were a file in docs/, so that relative imports resolve.
const path = (ex: Example) => join(ROOT, "docs", `LANGUAGE.md-line-${ex.line}.qzo`);

describe("docs/LANGUAGE.md examples", () => {
  it("has qzo examples", () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
  });

  it("stripSpans removes spans at every depth and nothing else", () => {
    const tree = { span: 1, a: [{ span: 2, b: { span: 3, c: "x" } }], d: null, e: 0 };
    expect(stripSpans(tree)).toEqual({ a: [{ b: { c: "x" } }], d: null, e: 0 });
  });

  describe.each(examples.map((ex) => [`the example at line ${ex.line}`, ex] as const))("%s", (_name, ex) => {
    it("checks without errors", () => {
      const r = checkSource(new SourceFile(path(ex), ex.text));
      expect(r.diagnostics.map(diagnosticHeadline)).toEqual([]);
      expect(r.modules.length + r.formats.length).toBeGreaterThan(0);
    });

    it("prints back to the same syntax tree", () => {
      const parsed = parseSource(new SourceFile(path(ex), ex.text));
      expect(parsed.diagnostics.items).toEqual([]);
      const printed = prettyPrint(parsed.ast!);
      const again = parseSource(new SourceFile(path(ex), printed));
      expect(again.diagnostics.items.map(diagnosticHeadline)).toEqual([]);
      expect(stripSpans(again.ast)).toEqual(stripSpans(parsed.ast));
      // The canonical form is a fixed point of the printer.
      expect(prettyPrint(again.ast!)).toBe(printed);
    });
  });
});
