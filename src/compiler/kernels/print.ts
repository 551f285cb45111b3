/** The kernel IR as text (`qzoc compile --emit kernels`): buffers, then steps with named operands. */
import { attrsOf, operandsOf, type KOperand, type KProgram, type KScalar, type KStep } from "./kernel-ir.js";

export function printKernels(p: KProgram): string {
  const buf = (id: number) => `#${id}:${p.buffers[id]!.name}`;
  const operand = (a: KOperand | KScalar) =>
    "buffer" in a ? buf(a.buffer) : "scalar" in a ? String(a.scalar) : `@${a.param.param}${a.param.index !== undefined ? `[${a.param.index}]` : ""}`;
  const lines = [`kernels ${p.graph} (${p.role}) of model ${p.module}  # after ${p.passes.join(", ")}`, "buffers"];
  for (const b of p.buffers) {
    const where = b.slot !== undefined ? ` slot ${b.slot}` : b.role === "temp" && p.slots ? " unused" : "";
    lines.push(`  ${buf(b.id)}: ${b.dtype}[${b.shape.join(", ")}] ${b.role}${where}`);
  }
  lines.push("steps");
  const walk = (steps: readonly KStep[], ind: string) => {
    for (const s of steps) {
      if (s.kind === "loop") {
        lines.push(`${ind}loop ${s.var} in ${s.start}..${s.end} carry (${s.carried.map((c) => `${buf(c.buffer)} <- ${buf(c.yields)}`).join(", ")}) {  # ${s.from}`);
        walk(s.body, ind + "  ");
        lines.push(`${ind}}`);
      } else {
        const args = [...operandsOf(s).map((o) => `${o.name}=${operand(o.value)}`), ...attrsOf(s).map((a) => `${a.name}=${a.value}`)];
        lines.push(`${ind}${s.op}(${args.join(", ")}) -> ${buf(s.out)}  # ${s.from.join("; ")}`);
      }
    }
  };
  walk(p.steps, "  ");
  if (p.slots) lines.push(`temporary slots: ${p.slots.length}; peak temporary bytes: ${p.peakBytes}`);
  return lines.join("\n") + "\n";
}
