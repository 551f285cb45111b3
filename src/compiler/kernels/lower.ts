/**
 * Lowering pass `lower-to-kernels`: a graph of the typed IR becomes a kernel
 * program with one kernel per IR operation. `param` nodes become parameter
 * operands read in place (never copied, never dequantized into a buffer);
 * scalar constants become attributes of the kernel that uses them; a `for`
 * node becomes a loop whose carried values live in one buffer each.
 */
import type { GraphIR, ModuleIR, NodeIR } from "../ir/ir.js";
import { QzoError } from "../../util/errors.js";
import type { KArg, KBuffer, KProgram, KStep } from "./kernel-ir.js";

export function lowerToKernels(m: ModuleIR, graphName: string): KProgram {
  const g = m.graphs.find((x) => x.name === graphName);
  if (!g) throw new QzoError(`${m.source}: no graph '${graphName}' (graphs: ${m.graphs.map((x) => x.name).join(", ")})`);
  const l = new Lowering(g);
  const inputs = g.inputs.map((v) => l.buffer(v, "input"));
  const steps = l.block(g.body.nodes);
  const out = l.operand(g.outputs[0]!);
  if (!("buffer" in out)) throw new QzoError(`${m.source}: graph '${graphName}' returns a parameter or constant; nothing to compute`);
  l.buffers[out.buffer]!.role = "output";
  return { module: m.name, graph: g.name, role: g.role, buffers: l.buffers, inputs, output: out.buffer, steps, passes: ["lower-to-kernels"] };
}

export function nodeText(n: NodeIR): string {
  const outs = n.outputs.map((o) => `%${o}`).join(", ");
  return `${outs} = ${n.op} (${n.loc.file}:${n.loc.line}:${n.loc.col})`;
}

class Lowering {
  readonly buffers: KBuffer[] = [];
  private byValue = new Map<number, KArg | { scalar: number }>();

  constructor(private readonly g: GraphIR) {}

  buffer(value: number, role: KBuffer["role"] = "temp", name?: string): number {
    const v = this.g.values[value]!;
    const dtype = v.type.elem.kind === "dtype" && v.type.elem.dtype.startsWith("i") ? "i32" : "f32";
    const id = this.buffers.length;
    this.buffers.push({ id, name: name ?? v.name ?? `t${value}`, dtype, shape: v.type.shape, role });
    this.byValue.set(value, { buffer: id });
    return id;
  }

  operand(value: number): KArg {
    const a = this.byValue.get(value);
    if (!a || "scalar" in a) throw new Error(`internal: value %${value} has no operand`);
    return a;
  }

  block(nodes: NodeIR[]): KStep[] {
    const steps: KStep[] = [];
    for (const n of nodes) {
      const from = [nodeText(n)];
      if (n.op === "param") {
        const index = n.attrs["index"];
        this.byValue.set(n.outputs[0]!, { param: { param: String(n.attrs["name"]), ...(index !== undefined ? { index: String(index) } : {}) } });
        continue;
      }
      if (n.op === "const") {
        this.byValue.set(n.outputs[0]!, { scalar: Number(n.attrs["value"]) });
        continue;
      }
      if (n.op === "for") {
        const body = n.body!;
        const carried = body.args.map((arg, k) => {
          const buf = this.buffer(arg, "temp");
          steps.push({ kind: "kernel", op: "copy", args: [this.operand(n.inputs[k]!)], outputs: [buf], attrs: {}, from });
          return buf;
        });
        const inner = this.block(body.nodes);
        const loop = {
          kind: "loop" as const,
          var: String(n.attrs["var"]),
          start: String(n.attrs["from"]),
          end: String(n.attrs["to"]),
          carried: carried.map((buffer, k) => ({ buffer, yields: (this.operand(body.yields[k]!) as { buffer: number }).buffer })),
          body: inner,
          from: from[0]!,
        };
        steps.push(loop);
        n.outputs.forEach((o, k) => this.byValue.set(o, { buffer: carried[k]! }));
        continue;
      }
      const attrs = { ...n.attrs };
      const args: KArg[] = [];
      n.inputs.forEach((i, k) => {
        const a = this.byValue.get(i);
        if (a && "scalar" in a) {
          attrs[k === 0 ? "scalar_left" : "scalar_right"] = a.scalar;
        } else if (a) {
          args.push(a);
        } else {
          throw new Error(`internal: value %${i} used before definition`);
        }
      });
      const op = ["add", "sub", "mul", "div"].includes(n.op) ? "binary" : ["silu", "gelu", "relu", "neg"].includes(n.op) ? "unary" : n.op;
      if (op !== n.op) attrs["fn"] = n.op;
      if (op === "linear") {
        steps.push({ kind: "kernel", op: "matmul", args, outputs: [this.buffer(n.outputs[0]!)], attrs, from });
        continue;
      }
      if (op === "binary" && args.length === 0) throw new QzoError(`${this.g.name}: an operation on two constants; fold it in the spec`);
      steps.push({ kind: "kernel", op, args, outputs: n.outputs.map((o) => this.buffer(o)), attrs, from });
    }
    return steps;
  }
}
