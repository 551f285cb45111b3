import type { Loc } from "../ir/ir.js";
import type { Node } from "../syntax/ast.js";

/** The IR location of an AST node: its file and 1-based line and column. */
export function locOf(n: Node): Loc {
  const { line, col } = n.span.file.position(n.span.start);
  return { file: n.span.file.path, line, col };
}
