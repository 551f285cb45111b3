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

export function renderDiagnostic(d: Diagnostic): string {
  const { line, col } = d.span.file.position(d.span.start);
  // Control bytes (a binary file, say) are shown as '?', so the terminal gets only text.
  const text = d.span.file.lineText(line).replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "?");
  const endOnLine = Math.min(d.span.end, d.span.start + Math.max(1, text.length - col + 1));
  const width = Math.max(1, endOnLine - d.span.start);
  const lines = [
    `${d.span.file.path}:${line}:${col}: error: ${d.message}`,
    `  ${text}`,
    `  ${" ".repeat(col - 1)}${"^".repeat(width)}`,
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
