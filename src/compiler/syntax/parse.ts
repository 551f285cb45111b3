/**
 * Source text -> AST, with lexical and syntax errors as diagnostics, and the
 * comments of the file attached to the declarations and statements around them.
 */
import type { IRecognitionException, IToken } from "chevrotain";
import type * as A from "./ast.js";
import { BLANK_LINE as A_BLANK } from "./ast.js";
import { qzoParser } from "./parser.js";
import { UnterminatedString, qzoLexer } from "./tokens.js";
import { DiagnosticBag } from "../diagnostics.js";
import { SourceFile } from "../source.js";

export interface ParseResult {
  ast?: A.File;
  diagnostics: DiagnosticBag;
}

export function parseSource(file: SourceFile): ParseResult {
  const diagnostics = new DiagnosticBag();
  if (file.text.includes("\u0000")) {
    const at = file.text.indexOf("\u0000");
    diagnostics.error({ file, start: at, end: at + 1 }, "this is a binary file, not a .qzo source (found a NUL byte)");
    return { diagnostics };
  }
  const lexed = qzoLexer.tokenize(file.text);
  for (const e of lexed.errors) {
    const ch = file.text.slice(e.offset, e.offset + e.length);
    diagnostics.error(
      { file, start: e.offset, end: e.offset + Math.max(1, e.length) },
      `unexpected character '${ch.charAt(0)}'`,
    );
  }
  const unterminated = lexed.tokens.filter((t) => t.tokenType === UnterminatedString);
  for (const t of unterminated) {
    diagnostics.error({ file, start: t.startOffset, end: t.startOffset + t.image.length }, "unterminated string literal", 'close it with " on the same line');
  }
  if (diagnostics.hasErrors) return { diagnostics };
  const parser = qzoParser();
  parser.file = file;
  parser.input = lexed.tokens;
  let ast: A.File | undefined;
  try {
    ast = parser.fileRule();
  } catch {
    ast = undefined;
  }
  if (process.env["QZO_DEBUG_PARSER"]) for (const e of parser.errors) console.error(e.name, e.message);
  for (const e of parser.errors) diagnostics.error(...syntaxError(file, e));
  if (diagnostics.hasErrors || ast === undefined) return { diagnostics };
  const deep = deepestExpression(ast);
  if (deep) {
    diagnostics.error(deep.span, `an expression nested more than ${MAX_EXPR_DEPTH} levels deep`, "split it into config entries or graph values");
    return { diagnostics };
  }
  attachComments(ast, lexed.groups["comments"] ?? []);
  return { ast, diagnostics };
}

/** Expressions nest at most this deep (every later stage walks them recursively). */
export const MAX_EXPR_DEPTH = 256;

/** The first node nested deeper than MAX_EXPR_DEPTH, found without recursion. */
function deepestExpression(ast: A.File): A.Node | undefined {
  const stack: { v: unknown; depth: number }[] = [{ v: ast, depth: 0 }];
  while (stack.length) {
    const { v, depth } = stack.pop()!;
    if (!v || typeof v !== "object") continue;
    if (depth > MAX_EXPR_DEPTH && "span" in v) return v as A.Node;
    for (const [k, x] of Object.entries(v)) if (k !== "span") stack.push({ v: x, depth: depth + 1 });
  }
  return undefined;
}

function syntaxError(file: SourceFile, e: IRecognitionException): [A.Node["span"], string] {
  const tok = e.token;
  const atEnd = tok.tokenType?.name === "EOF" || Number.isNaN(tok.startOffset);
  const start = atEnd ? Math.max(0, trimmedEnd(file.text) - 1) : tok.startOffset;
  const end = atEnd ? start + 1 : start + Math.max(1, tok.image.length);
  const found = atEnd ? "end of file" : `'${tok.image}'`;
  const expected = expectedFrom(e);
  return [{ file, start, end }, `expected ${expected}, found ${found}`];
}

function trimmedEnd(text: string): number {
  return text.replace(/\s+$/, "").length || 1;
}

/** A short "expected ..." phrase from chevrotain's message. */
function expectedFrom(e: IRecognitionException): string {
  const m = /Expecting (?:token of type )?--> (.+?) <--/.exec(e.message);
  if (m) return describeToken(m[1]!);
  const alts = /one of these possible Token sequences:\s*\n([\s\S]*?)\nbut found/.exec(e.message);
  if (alts) {
    const firsts = new Set<string>();
    for (const line of alts[1]!.split("\n")) {
      const seq = /\[([^\]]*)\]/.exec(line);
      const first = seq?.[1]?.split(",")[0]?.trim();
      if (first) firsts.add(describeToken(first));
    }
    if (firsts.has("a number") && firsts.has("a name") && firsts.has("'('")) return "an expression";
    return oneOf([...firsts]);
  }
  if (e.name === "NotAllInputParsedException") return "a 'format' or 'model' declaration";
  return "something else";
}

function oneOf(items: string[]): string {
  if (items.length <= 1) return items[0] ?? "something else";
  return `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

function describeToken(name: string): string {
  const punct: Record<string, string> = {
    LBrace: "'{'", RBrace: "'}'", LParen: "'('", RParen: "')'", LBracket: "'['", RBracket: "']'",
    Comma: "','", Colon: "':'", Equals: "'='", Pipe: "'|'", Arrow: "'->'", DotDot: "'..'",
    Plus: "'+'", Minus: "'-'", Star: "'*'", Slash: "'/'", Percent: "'%'",
    Name: "a name", Identifier: "a name", Number: "a number", String: "a string",
  };
  if (name.startsWith("'")) return name;
  return punct[name] ?? `'${name.toLowerCase()}'`;
}

// ------------------------------------------------------------ comments

type Item = A.Node & A.Commented;

interface Container {
  span: A.Node["span"];
  items: Item[];
  end: string[];
}

/** Every node that holds a list of commented items, outermost first. */
function containers(file: A.File): Container[] {
  const out: Container[] = [{ span: file.span, items: [...file.imports, ...file.decls], end: file.endComments }];
  const stmts = (body: A.Stmt[]) => {
    for (const s of body) {
      if (s.kind === "for") {
        out.push({ span: s.span, items: s.body, end: s.endComments });
        stmts(s.body);
      }
    }
  };
  for (const d of file.decls) {
    if (d.kind === "format") {
      out.push({ span: d.span, items: d.clauses, end: d.endComments });
      for (const c of d.clauses) {
        if (c.kind === "layout") out.push({ span: c.layout.span, items: c.layout.fields, end: c.layout.endComments });
      }
      continue;
    }
    out.push({ span: d.span, items: d.items, end: d.endComments });
    for (const it of d.items) {
      if (it.kind === "config") out.push({ span: it.span, items: it.entries, end: it.endComments });
      if (it.kind === "param_loop") out.push({ span: it.span, items: it.params, end: it.endComments });
      if (it.kind === "train") out.push({ span: it.span, items: it.settings, end: it.endComments });
      if (it.kind === "graph") {
        out.push({ span: it.span, items: it.body, end: it.endComments });
        stmts(it.body);
      }
    }
  }
  return out;
}

/**
 * Gives each comment to the innermost container around it: a comment on the
 * line where an item ends trails that item, one before an item leads it, one
 * after the last item ends the container. A comment inside a leaf item (in the
 * middle of an expression, say) leads that item, so that no comment is lost.
 */
function attachComments(file: A.File, comments: IToken[]): void {
  if (comments.length === 0) return;
  const all = containers(file);
  const src = file.span.file;
  const lastLine = new Map<string[], number>();
  /** Adds a comment to a list, with a blank-line marker where the source had a blank line before it. */
  const push = (list: string[], text: string, line: number) => {
    const prev = lastLine.get(list);
    if (prev !== undefined && line > prev + 1) list.push(A_BLANK);
    list.push(text);
    lastLine.set(list, line);
  };
  for (const c of comments) {
    const text = c.image.slice(1).trimEnd();
    const off = c.startOffset;
    let best: Container | undefined;
    for (const k of all) {
      if (off >= k.span.start && off < k.span.end && (!best || k.span.start >= best.span.start)) best = k;
    }
    if (!best) continue;
    const line = src.position(off).line;
    const inside = best.items.find((it) => off >= it.span.start && off < it.span.end);
    if (inside) {
      push(inside.leading, text, line);
      continue;
    }
    const before = [...best.items].reverse().find((it) => it.span.end <= off);
    if (before && src.position(before.span.end - 1).line === line && before.trailing === undefined) {
      before.trailing = text;
      continue;
    }
    const after = best.items.find((it) => it.span.start > off);
    if (after) push(after.leading, text, line);
    else push(best.end, text, line);
  }
  // A blank line between the last leading comment and its item is kept too.
  for (const k of all) {
    for (const it of k.items) {
      const l = lastLine.get(it.leading);
      if (l !== undefined && src.position(it.span.start).line > l + 1) it.leading.push(A_BLANK);
    }
  }
}
