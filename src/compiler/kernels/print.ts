/** The kernel IR as text (`qzoc compile --emit kernels`). */
import type { KArg, KProgram, KStep } from "./kernel-ir.js";

export function printKernels(p: KProgram): string {
  const buf = (id: number) => `#${id}:${p.buffers[id]!.name}`;
  const arg = (a: KArg) => ("buffer" in a ? buf(a.buffer) : `@${a.param.param}${a.param.index !== undefined ? `[${a.param.index}]` : ""}`);
  const lines = [`kernels ${p.graph} (${p.role}) of model ${p.module}  # after ${p.passes.join(", ")}`, "buffers"];
  for (const b of p.buffers) {
    lines.push(`  ${buf(b.id)}: ${b.dtype}[${b.shape.join(", ")}] ${b.role}${b.slot !== undefined ? ` slot ${b.slot}` : ""}`);
  }
  lines.push("steps");
  const walk = (steps: KStep[], ind: string) => {
    for (const s of steps) {
      if (s.kind === "loop") {
        lines.push(`${ind}loop ${s.var} in ${s.start}..${s.end} carry (${s.carried.map((c) => `${buf(c.buffer)} <- ${buf(c.yields)}`).join(", ")}) {  # ${s.from}`);
        walk(s.body, ind + "  ");
        lines.push(`${ind}}`);
      } else {
        const attrs = Object.entries(s.attrs).map(([k, v]) => `${k}=${v}`);
        lines.push(`${ind}${s.op}(${[...s.args.map(arg), ...attrs].join(", ")}) -> ${s.outputs.map(buf).join(", ")}  # ${s.from.join("; ")}`);
      }
    }
  };
  walk(p.steps, "  ");
  if (p.peakBytes) lines.push(`peak temporary bytes: ${p.peakBytes}`);
  return lines.join("\n") + "\n";
}
