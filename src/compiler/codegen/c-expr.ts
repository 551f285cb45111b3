/**
 * Canonical index and shape expressions (src/compiler/ir/symbolic.ts) are
 * valid C for non-negative integers; code generators only rename the names in
 * them (a config entry to its constant, a layout variable to a loop index).
 */
export function cExpr(expr: string, rename: (name: string) => string): string {
  return expr.replace(/[A-Za-z_][A-Za-z0-9_]*/g, (n) => rename(n));
}
