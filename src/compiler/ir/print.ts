/**
 * The IR as text a person can read (`qzoc compile --emit ir`). Values are
 * `%N` (with the source variable name after a colon when there is one),
 * parameters `@name`, and every node ends with the source location it came
 * from. Shapes equal to a derived config entry print as that entry's name.
 */
import type { BlockIR, FormatIR, GraphIR, Loc, ModuleIR, NodeIR, ParamIR, TensorType } from "./ir.js";

export function printModule(m: ModuleIR): string {
  const fold = new Map<string, string>();
  const names = new Set(m.config.map((c) => c.name));
  for (const c of m.config) if (c.expansion && !fold.has(c.expansion) && !names.has(c.expansion)) fold.set(c.expansion, c.name);
  const dim = (d: string) => fold.get(d) ?? d;
  const type = (t: TensorType) => `${t.elem.kind === "dtype" ? t.elem.dtype : t.elem.format}[${t.shape.map(dim).join(", ")}]`;
  const out: string[] = [`module ${m.name}  # ${m.source}`, "", "config"];
  const w = Math.max(...m.config.map((c) => `${c.name}: ${c.value.type}`.length), 0);
  for (const c of m.config) {
    const head = `${c.name}: ${c.value.type}`.padEnd(w);
    const shown = String(c.value.value);
    out.push(`  ${head} = ${c.value.expr}${c.value.expr === shown ? "" : `  (= ${shown})`}`);
  }
  for (const f of m.formats) out.push("", ...printFormat(f));
  out.push("");
  for (const p of m.params) out.push(printParam(p, type, dim));
  for (const g of m.graphs) out.push("", ...printGraph(g, type, dim));
  const t = m.train;
  out.push(
    "",
    "train",
    `  loss ${t.loss || "(none)"}; eps ${t.eps} ${t.epsMode}; lr ${t.lr} ${t.schedule}${t.warmup ? ` warmup ${t.warmup}` : ""}; clip ${t.clip}; directions ${t.directions}; z ${t.z}`,
    `  scale_floor ${t.scaleFloor}; batch ${t.batch}; steps ${t.steps}; eval_every ${t.evalEvery}; seed ${t.seed}`,
    `  trainable (${t.trainable.length}): ${t.trainable.map((x) => `${x.param}.${x.field}`).join(", ") || "(none)"}`,
    ...Object.entries(t.byLoss).map(([loss, h]) => `  with loss ${loss}: ${Object.entries(h).map(([k, v]) => `${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)} ${v}`).join("; ")}`),
  );
  return out.join("\n") + "\n";
}

function at(loc: Loc): string {
  return `${loc.file}:${loc.line}:${loc.col}`;
}

export function printFormat(f: FormatIR): string[] {
  const code = `code ${f.code.signed ? "i" : "u"}${f.code.bits}${f.code.offset ? ` offset ${f.code.offset}` : ""}${f.code.lookup ? ` lookup ${f.code.lookup}` : ""}`;
  const block = f.block.size ? `block ${f.block.size} along ${f.block.axis}` : "no blocks";
  const parts = [code, block, `scale ${f.scale.dtype} per ${f.scale.per}`];
  if (f.zero) parts.push(`zero ${f.zero.signed ? "i" : "u"}${f.zero.bits}${f.zero.adjust ? ` adjust ${f.zero.adjust}` : ""}`);
  if (f.min) parts.push(`min ${f.min.dtype}`);
  const lines = [`format ${f.name}  # ${at(f.loc)}`, `  ${parts.join("; ")}`, `  ${f.formula}  (${f.bitsPerWeight} bits per weight)`];
  for (const cb of f.codebooks) {
    lines.push(`  codebook ${cb.name}: ${cb.dtype}[${cb.shape.join(", ")}]${cb.additive ? " additive, from the checkpoint" : ` = [${cb.values!.join(", ")}]`}`);
  }
  if (f.layout.kind === "record") {
    lines.push(`  layout record ${f.layout.bytes} bytes`);
    for (const x of f.layout.fields) lines.push(`    ${x.field}${x.index ? `[${x.index}]` : ""} at bit ${x.bitExpr}`);
  } else {
    lines.push("  layout tensors");
    for (const x of f.layout.fields) {
      lines.push(`    ${x.field} in "${x.tensor}" ${x.dtype}[${x.shape.join(", ")}] at [${x.at.join(", ")}]${x.bit ? ` bit ${x.bit}` : ""}`);
    }
  }
  return lines;
}

function printParam(p: ParamIR, type: (t: TensorType) => string, dim: (d: string) => string): string {
  const arr = p.array ? `[${p.array.var} in ${dim(p.array.from)}..${dim(p.array.to)}]` : "";
  const storage = p.fallback ? ` or ${p.fallback}` : "";
  const resolved = p.type.elem.kind === "quant" && p.resolved !== p.type.elem.format ? `  (stored as ${p.resolved} with the config defaults)` : "";
  const sources = Object.entries(p.sources)
    .map(([fam, names]) => `${fam} ${names.map((n) => `"${n.tensor}"${n.index ? `[${n.index}]` : ""}${n.transforms.map((t) => ` | ${t.name}(${t.args.join(", ")})`).join("")}`).join(" or ")}`)
    .join("; ");
  return `param @${p.name}${arr}: ${type(p.type)}${storage}${resolved}  # ${at(p.loc)}${sources ? `\n    from ${sources}` : ""}`;
}

function printGraph(g: GraphIR, type: (t: TensorType) => string, dim: (d: string) => string): string[] {
  const name = (id: number) => {
    const v = g.values[id]!;
    return v.name ? `%${id}:${v.name}` : `%${id}`;
  };
  const decl = (id: number) => `${name(id)}: ${type(g.values[id]!.type)}`;
  const lines = [`${g.role} ${g.name}(${g.inputs.map(decl).join(", ")}) -> ${g.outputs.map(decl).join(", ")} {  # ${at(g.loc)}`];
  const block = (b: BlockIR, indent: string): void => {
    for (const n of b.nodes) {
      if (n.op === "for") {
        const carry = n.body!.args.map((a, k) => `${name(a)} = ${name(n.inputs[k]!)}`).join(", ");
        lines.push(`${indent}${n.outputs.map(name).join(", ")} = for ${n.attrs["var"]} in ${dim(String(n.attrs["from"]))}..${dim(String(n.attrs["to"]))} carry (${carry}) {  # ${at(n.loc)}`);
        block(n.body!, indent + "  ");
        lines.push(`${indent}  yield ${n.body!.yields.map(name).join(", ")}`, `${indent}}`);
      } else {
        lines.push(`${indent}${n.outputs.map(decl).join(", ")} = ${nodeText(n, name, dim)}  # ${at(n.loc)}`);
      }
    }
  };
  block(g.body, "  ");
  lines.push(`  return ${g.outputs.map(name).join(", ")}`, "}");
  return lines;
}

function nodeText(n: NodeIR, name: (id: number) => string, dim: (d: string) => string): string {
  if (n.op === "param") return `param @${n.attrs["name"]}${n.attrs["index"] !== undefined ? `[${n.attrs["index"]}]` : ""}`;
  if (n.op === "const") return `const ${n.attrs["value"]}`;
  const attrs = Object.entries(n.attrs).map(([k, v]) => `${k} = ${typeof v === "string" ? dim(v) : v}`);
  return `${n.op}(${[...n.inputs.map(name), ...attrs].join(", ")})`;
}
