import type { Span } from "./source.js";

/**
 * A compile-time diagnostic. It renders as
 *   path:line:col: error: message
 *     <source line>
 *     <caret under the span>
 *   hint: ...
 */
export interface Diagnostic {
  span: Span;
  message: string;
  hint?: string;
}

/** Characters of a source line shown under a diagnostic. */
const SHOWN = 160;

export function renderDiagnostic(d: Diagnostic): string {
  const { line, col } = d.span.file.position(d.span.start);
  // Control bytes (a binary file, say) are shown as '?', so the terminal gets only text.
  const full = d.span.file.lineText(line).replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "?");
  const endOnLine = Math.min(d.span.end, d.span.start + Math.max(1, full.length - col + 1));
  // A long line is shown as a window around the column.
  const from = full.length > SHOWN ? Math.max(0, Math.min(col - 1 - SHOWN / 2, full.length - SHOWN)) : 0;
  const text = (from > 0 ? "..." : "") + full.slice(from, from + SHOWN) + (from + SHOWN < full.length ? "..." : "");
  const caretAt = col - 1 - from + (from > 0 ? 3 : 0);
  const width = Math.max(1, Math.min(endOnLine - d.span.start, SHOWN - (col - 1 - from)));
  const lines = [
    `${d.span.file.path}:${line}:${col}: error: ${d.message}`,
    `  ${text}`,
    `  ${" ".repeat(caretAt)}${"^".repeat(width)}`,
  ];
  if (d.hint) lines.push(`hint: ${d.hint}`);
  return lines.join("\n");
}

/** The first line of a diagnostic: `path:line:col: error: message`. */
export function diagnosticHeadline(d: Diagnostic): string {
  const { line, col } = d.span.file.position(d.span.start);
  return `${d.span.file.path}:${line}:${col}: error: ${d.message}`;
}

/** Collects diagnostics so that one run reports every error of a file. */
export class DiagnosticBag {
  readonly items: Diagnostic[] = [];

  error(span: Span, message: string, hint?: string): void {
    // A graph inlined into another is checked once per use; report each error once.
    if (this.items.some((d) => d.span.file === span.file && d.span.start === span.start && d.message === message)) return;
    this.items.push(hint === undefined ? { span, message } : { span, message, hint });
  }

  get hasErrors(): boolean {
    return this.items.length > 0;
  }

  sorted(): Diagnostic[] {
    return [...this.items].sort(
      (a, b) => a.span.file.path.localeCompare(b.span.file.path) || a.span.start - b.span.start,
    );
  }
}

/** Thrown by a compiler stage that cannot go on; carries every diagnostic found so far. */
export class CompileError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(diagnosticHeadline).join("\n"));
    this.name = "CompileError";
  }
}
