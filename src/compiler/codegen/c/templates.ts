/**
 * The nunjucks templates of a target (templates/<target>/: the program, one macro per kernel in
 * kernels.njk) and the real headers the generated program includes (templates/<target>/include/).
 * Templates get only views whose text went through c/literal.ts; autoescaping is off because the
 * output is C, not HTML.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import nunjucks from "nunjucks";
import { packageRoot } from "../../../util/package-root.js";
import type { GeneratedFile } from "../target.js";

export interface Templates {
  /** Renders a whole template file. */
  file(name: string, view: Record<string, unknown>): string;
  /** Renders one macro of kernels.njk. */
  macro(name: string, view: Record<string, unknown>): string;
  /** The target's headers, as files under qzo/ for the build directory. */
  headers(): GeneratedFile[];
}

export function templatesOf(target: "cpu" | "cuda"): Templates {
  const dir = join(packageRoot(), "templates", target);
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir), { autoescape: false, throwOnUndefined: true, trimBlocks: false });
  const include = join(dir, "include", "qzo");
  return {
    file: (name, view) => env.render(name, view),
    macro: (name, view) => env.renderString(`{% import "kernels.njk" as K %}{{ K.${name}(k) }}`, { k: view }),
    headers: () =>
      readdirSync(include)
        .sort()
        .map((f) => ({ path: `qzo/${f}`, text: readFileSync(join(include, f), "utf8") })),
  };
}
