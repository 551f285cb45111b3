/**
 * The canonical pretty-printer behind `qzoc fmt`: AST -> source text.
 * Re-parsing its output gives the same AST (spans aside); comments are kept
 * with the declarations and statements they were written next to.
 */
import type * as A from "./ast.js";
import { BLANK_LINE } from "./ast.js";

const WIDTH = 100;
const IND = "  ";

export function prettyPrint(file: A.File): string {
  const out: string[] = [];
  for (const imp of file.imports) item(out, "", imp, `import ${str(imp.path.value)}`);
  file.decls.forEach((d, i) => {
    if (out.length > 0 || i > 0) out.push("");
    if (d.kind === "format") formatDecl(out, d);
    else modelDecl(out, d);
  });
  if (file.endComments.length) {
    if (out.length) out.push("");
    for (const c of file.endComments) out.push(comment("", c));
  }
  return out.length ? out.join("\n") + "\n" : "";
}

function comment(indent: string, text: string): string {
  if (text === BLANK_LINE) return "";
  return `${indent}#${text.length && !text.startsWith(" ") ? " " : ""}${text}`.trimEnd();
}

/** Writes an item's leading comments, its lines, and its trailing comment on the last line. */
function item(out: string[], indent: string, node: A.Commented, ...lines: string[]): void {
  for (const c of node.leading) out.push(comment(indent, c));
  lines.forEach((l, i) => {
    const last = i === lines.length - 1;
    out.push(`${indent}${l}${last && node.trailing !== undefined ? `  ${comment("", node.trailing)}` : ""}`);
  });
}

function closing(out: string[], indent: string, end: string[]): void {
  for (const c of end) out.push(comment(indent + IND, c));
  out.push(`${indent}}`);
}

// ---------------------------------------------------------------- formats

function formatDecl(out: string[], d: A.FormatDecl): void {
  for (const c of d.leading) out.push(comment("", c));
  out.push(`format ${d.name.name} {${d.trailing !== undefined ? `  ${comment("", d.trailing)}` : ""}`);
  for (const c of d.clauses) clause(out, IND, c);
  closing(out, "", d.endComments);
}

function clause(out: string[], ind: string, c: A.FormatClause): void {
  switch (c.kind) {
    case "code":
      item(out, ind, c, `code ${c.type.name}${c.offset ? ` offset ${expr(c.offset)}` : ""}${c.lookup ? ` lookup ${c.lookup.name}` : ""}`);
      return;
    case "block":
      item(out, ind, c, `block ${expr(c.size)} along ${c.axis.name}`);
      return;
    case "scale":
      item(out, ind, c, `scale ${c.dtype.name}${c.per ? ` per ${c.per.name}` : ""}`);
      return;
    case "zero":
      item(out, ind, c, `zero ${c.type.name}${c.adjust ? ` adjust ${expr(c.adjust)}` : ""}`);
      return;
    case "min":
      item(out, ind, c, `min ${c.dtype.name}`);
      return;
    case "codebook": {
      const head = `codebook ${c.name.name} ${type(c.type)}`;
      if (c.additive) item(out, ind, c, `${head} additive${c.tensor ? ` in ${str(c.tensor.value)}` : ""}`);
      else item(out, ind, c, ...listLines(`${head} = `, c.values!.items, ind));
      return;
    }
    case "layout": {
      const lay = c.layout;
      const head = lay.kind === "record" ? `layout record ${expr(lay.bytes)} {` : "layout tensors {";
      for (const x of c.leading) out.push(comment(ind, x));
      out.push(`${ind}${head}${c.trailing !== undefined ? `  ${comment("", c.trailing)}` : ""}`);
      const inner = ind + IND;
      if (lay.kind === "record") {
        for (const f of lay.fields) {
          item(out, inner, f, `${f.field.name}${f.index ? `[${f.index.name}]` : ""} at ${expr(f.byte)}${f.bit ? ` bit ${expr(f.bit)}` : ""}`);
        }
      } else {
        for (const f of lay.fields) {
          item(out, inner, f, `${f.field.name} in ${str(f.tensor.value)} ${type(f.type)} at [${f.at.map(expr).join(", ")}]${f.bit ? ` bit ${expr(f.bit)}` : ""}`);
        }
      }
      closing(out, ind, lay.endComments);
      return;
    }
  }
}

/** A list literal, on one line when it fits, else filled to the width with continuation lines. */
function listLines(prefix: string, items: A.Expr[], ind: string): string[] {
  const one = `${prefix}[${items.map(expr).join(", ")}]`;
  if (ind.length + one.length <= WIDTH) return [one];
  const lines = [`${prefix}[`];
  let cur = "";
  const inner = IND;
  items.forEach((e, i) => {
    const piece = expr(e) + (i < items.length - 1 ? "," : "");
    if (cur && ind.length + inner.length + cur.length + 1 + piece.length > WIDTH) {
      lines.push(inner + cur);
      cur = piece;
    } else {
      cur = cur ? `${cur} ${piece}` : piece;
    }
  });
  if (cur) lines.push(inner + cur);
  lines.push("]");
  return lines;
}

// ---------------------------------------------------------------- models

function modelDecl(out: string[], d: A.ModelDecl): void {
  for (const c of d.leading) out.push(comment("", c));
  out.push(`model ${d.name.name} {${d.trailing !== undefined ? `  ${comment("", d.trailing)}` : ""}`);
  d.items.forEach((it, i) => {
    const prev = d.items[i - 1];
    if (i > 0 && !(it.kind === "param" && (prev?.kind === "param" || prev?.kind === "param_loop"))) out.push("");
    modelItem(out, IND, it);
  });
  closing(out, "", d.endComments);
}

function modelItem(out: string[], ind: string, it: A.ModelItem): void {
  switch (it.kind) {
    case "config":
      block(out, ind, it, "config", it.endComments, () => {
        for (const e of it.entries) {
          item(out, ind + IND, e, ...withSources(`${e.name.name}: ${e.type.name} = ${expr(e.value)}`, e.sources, ind + IND));
        }
      });
      return;
    case "param":
      param(out, ind, it);
      return;
    case "param_loop":
      block(out, ind, it, `for ${it.var.name} in ${expr(it.from)}..${expr(it.to)}`, it.endComments, () => {
        for (const p of it.params) param(out, ind + IND, p);
      });
      return;
    case "graph": {
      const inputs = it.inputs.map((x) => `${x.name.name}: ${type(x.type)}`).join(", ");
      const head = `${it.role} ${it.name.name}(${inputs})${it.result ? ` -> ${type(it.result)}` : ""}`;
      block(out, ind, it, head, it.endComments, () => stmts(out, ind + IND, it.body));
      return;
    }
    case "train":
      block(out, ind, it, it.loss ? `train ${it.loss.name}` : "train", it.endComments, () => {
        for (const s of it.settings) item(out, ind + IND, s, `${s.key.name} = ${expr(s.value)}${s.modifier ? ` ${s.modifier.name}` : ""}`);
      });
      return;
  }
}

function block(out: string[], ind: string, node: A.Commented, head: string, end: string[], body: () => void): void {
  for (const c of node.leading) out.push(comment(ind, c));
  out.push(`${ind}${head} {${node.trailing !== undefined ? `  ${comment("", node.trailing)}` : ""}`);
  body();
  closing(out, ind, end);
}

function param(out: string[], ind: string, p: A.ParamDecl): void {
  const head = `param ${p.name.name}${p.index ? `[${p.index.name}]` : ""}: ${type(p.type)}`;
  item(out, ind, p, ...withSources(head, p.sources, ind));
}

/** `head { fam "a"  fam2 "b" }` on one line when it fits, else one source per line. */
function withSources(head: string, sources: A.SourceRef[], ind: string): string[] {
  if (sources.length === 0) return [head];
  const refs = sources.map(sourceRef);
  const one = `${head} { ${refs.join("  ")} }`;
  if (ind.length + one.length <= WIDTH) return [one];
  return [`${head} {`, ...refs.map((r) => IND + r), "}"];
}

function sourceRef(s: A.SourceRef): string {
  const names = s.names.map((n) => {
    const idx = n.index ? `[${expr(n.index)}]` : "";
    return `${str(n.tensor.value)}${idx}${n.transforms.map((t) => ` | ${expr(t)}`).join("")}`;
  });
  return `${s.family.name} ${names.join(" or ")}`;
}

function stmts(out: string[], ind: string, body: A.Stmt[]): void {
  for (const s of body) {
    if (s.kind === "assign") item(out, ind, s, `${s.target.name} = ${expr(s.value)}`);
    else if (s.kind === "return") item(out, ind, s, `return ${expr(s.value)}`);
    else block(out, ind, s, `for ${s.var.name} in ${expr(s.from)}..${expr(s.to)}`, s.endComments, () => stmts(out, ind + IND, s.body));
  }
}

// ---------------------------------------------------------------- expressions

function type(t: A.TypeExpr): string {
  const shape = t.shape.length ? `[${t.shape.map(expr).join(", ")}]` : "";
  return `${t.base.name}${shape}${t.fallback ? ` or ${t.fallback.name}` : ""}`;
}

function str(s: string): string {
  return `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n").replace(/\t/g, "\\t")}"`;
}

const PREC: Record<A.BinaryOp, number> = { "+": 1, "-": 1, "*": 2, "/": 2, "%": 2 };

function prec(e: A.Expr): number {
  if (e.kind === "binary") return PREC[e.op];
  if (e.kind === "unary") return 3;
  return 4;
}

export function expr(e: A.Expr): string {
  switch (e.kind) {
    case "number":
      return e.text;
    case "string":
      return str(e.value);
    case "bool":
      return String(e.value);
    case "name":
      return e.name;
    case "index":
      return `${wrap(e.target, 4)}[${e.indices.map(expr).join(", ")}]`;
    case "call": {
      const args = [...e.args.map(expr), ...e.named.map((a) => `${a.name.name} = ${expr(a.value)}`)];
      return `${e.callee.name}(${args.join(", ")})`;
    }
    case "binary": {
      const p = PREC[e.op];
      return `${wrap(e.left, p)} ${e.op} ${wrap(e.right, p + 1)}`;
    }
    case "unary":
      return `-${wrap(e.operand, 3)}`;
    case "list":
      return `[${e.items.map(expr).join(", ")}]`;
  }
}

function wrap(e: A.Expr, min: number): string {
  return prec(e) < min ? `(${expr(e)})` : expr(e);
}
