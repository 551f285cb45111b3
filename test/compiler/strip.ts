/** An AST without source spans, for comparing the trees of two parses. */
export function stripSpans(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(stripSpans);
  if (x && typeof x === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) if (k !== "span") out[k] = stripSpans(v);
    return out;
  }
  return x;
}
