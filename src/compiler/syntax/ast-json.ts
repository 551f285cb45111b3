import type { File } from "./ast.js";
import type { Span } from "../source.js";

/** The AST as JSON for `qzoc compile --emit ast`: spans become "path:line:col". */
export function astToJson(file: File): string {
  return (
    JSON.stringify(
      file,
      (key, value: unknown) => {
        if (key === "span") {
          const s = value as Span;
          const { line, col } = s.file.position(s.start);
          return `${s.file.path}:${line}:${col}`;
        }
        return value;
      },
      1,
    ) + "\n"
  );
}
