/**
 * Lowering pass `lower-to-kernels`: a graph of the typed IR becomes a kernel
 * program with one kernel per IR operation, made by that op's own lowering in
 * the op registry (sema/ops.ts). `param` nodes become parameter operands read
 * in place (never copied, never dequantized into a buffer); scalar constants
 * become scalar operands of the elementwise kernel that uses them; a `for`
 * node becomes a loop whose carried values live in one buffer each.
 */
import type { GraphIR, ModuleIR, NodeIR } from "../ir/ir.js";
import { OPERATOR_KERNELS, OPS, type LowerArgs, type Lowering } from "../sema/ops.js";
import { QzoError, UnsupportedError } from "../../util/errors.js";
import type { KBuf, KBuffer, KOperand, KProgram, KScalar, KStep, KWeight } from "./kernel-ir.js";

export function lowerToKernels(m: ModuleIR, graphName: string): KProgram {
  const g = m.graphs.find((x) => x.name === graphName);
  if (!g) throw new QzoError(`${m.source}: no graph '${graphName}' (graphs: ${m.graphs.map((x) => x.name).join(", ")})`);
  const l = new Lowering_(g);
  const inputs = g.inputs.map((v) => l.buffer(v, "input"));
  const steps = l.block(g.body.nodes);
  const out = l.value(g.outputs[0]!);
  if (!out || !("buffer" in out)) throw new QzoError(`${m.source}: graph '${graphName}' returns a parameter or constant; nothing to compute`);
  const buffers = l.buffers.map((b) => (b.id === out.buffer ? { ...b, role: "output" as const } : b));
  return { module: m.name, graph: g.name, role: g.role, buffers, inputs, output: out.buffer, steps, passes: ["lower-to-kernels"] };
}

export function nodeText(n: NodeIR): string {
  const outs = n.outputs.map((o) => `%${o}`).join(", ");
  return `${outs} = ${n.op} (${n.loc.file}:${n.loc.line}:${n.loc.col})`;
}

/** The kernel lowering of an IR op: its registry entry's. */
function loweringOf(op: string): Lowering | undefined {
  return OPS[op]?.kernel ?? OPERATOR_KERNELS[op as keyof typeof OPERATOR_KERNELS];
}

class Lowering_ {
  readonly buffers: KBuffer[] = [];
  private byValue = new Map<number, KOperand | KScalar>();

  constructor(private readonly g: GraphIR) {}

  buffer(value: number, role: KBuffer["role"] = "temp"): number {
    const v = this.g.values[value]!;
    const dtype = v.type.elem.kind === "dtype" && v.type.elem.dtype.startsWith("i") ? "i32" : "f32";
    const id = this.buffers.length;
    this.buffers.push({ id, name: v.name ?? `t${value}`, dtype, shape: v.type.shape, role });
    this.byValue.set(value, { buffer: id });
    return id;
  }

  value(id: number): KOperand | KScalar | undefined {
    return this.byValue.get(id);
  }

  block(nodes: NodeIR[]): KStep[] {
    const steps: KStep[] = [];
    for (const n of nodes) {
      const from = [nodeText(n)];
      if (n.op === "param") {
        const index = n.attrs["index"];
        this.byValue.set(n.outputs[0]!, { param: { param: String(n.attrs["name"]), ...(index !== undefined ? { index: String(index) } : {}) } });
      } else if (n.op === "const") {
        this.byValue.set(n.outputs[0]!, { scalar: Number(n.attrs["value"]) });
      } else if (n.op === "for") {
        steps.push(...this.loop(n, from));
      } else {
        const lower = loweringOf(n.op);
        if (!lower) throw new UnsupportedError(`${from[0]}: the op '${n.op}' has no kernel lowering`);
        const op = lower(this.args(n, from[0]!));
        steps.push({ ...op, kind: "kernel", out: this.buffer(n.outputs[0]!), from });
      }
    }
    return steps;
  }

  private loop(n: NodeIR, from: string[]): KStep[] {
    const body = n.body!;
    const copies: KStep[] = [];
    const carried = body.args.map((arg, k) => {
      const buf = this.buffer(arg, "temp");
      copies.push({ op: "copy", x: this.buf(n.inputs[k]!, from[0]!, "a loop-carried value"), kind: "kernel", out: buf, from });
      return buf;
    });
    const inner = this.block(body.nodes);
    n.outputs.forEach((o, k) => this.byValue.set(o, { buffer: carried[k]! }));
    return [
      ...copies,
      {
        kind: "loop",
        var: String(n.attrs["var"]),
        start: String(n.attrs["from"]),
        end: String(n.attrs["to"]),
        carried: carried.map((buffer, k) => ({ buffer, yields: this.buf(body.yields[k]!, from[0]!, "a loop's yielded value").buffer })),
        body: inner,
        from: from[0]!,
      },
    ];
  }

  private buf(id: number, where: string, what: string): KBuf {
    const v = this.byValue.get(id);
    if (!v || !("buffer" in v)) throw new UnsupportedError(`${where}: ${what} must be a computed value for the kernel code generators`);
    return v;
  }

  private args(n: NodeIR, where: string): LowerArgs {
    const input = (i: number): KOperand | KScalar => {
      const v = this.byValue.get(n.inputs[i]!);
      if (!v) throw new Error(`internal: value %${n.inputs[i]} used before definition`);
      return v;
    };
    const attr = (name: string) => {
      const v = n.attrs[name];
      if (v === undefined) throw new Error(`internal: ${where}: attribute ${name} is missing`);
      return v;
    };
    const operand = (i: number): KOperand => {
      const v = input(i);
      if ("scalar" in v) throw new UnsupportedError(`${where}: operand ${i + 1} is a constant; the kernel code generators need a value or a parameter`);
      return v;
    };
    return {
      buf: (i) => this.buf(n.inputs[i]!, where, `operand ${i + 1} of '${n.op}'`),
      weight: (i) => {
        const v = input(i);
        if (!("param" in v)) throw new UnsupportedError(`${where}: operand ${i + 1} of '${n.op}' must be a parameter for the kernel code generators`);
        return v as KWeight;
      },
      operand,
      optional: (i) => (i < n.inputs.length ? operand(i) : undefined),
      valueOrScalar: (i) => {
        const v = input(i);
        if ("param" in v) throw new UnsupportedError(`${where}: operand ${i + 1} of '${n.op}' is a parameter; the elementwise kernels read computed values`);
        if (n.inputs.every((_, k) => "scalar" in input(k))) throw new UnsupportedError(`${where}: an operation on two constants; fold it in the spec`);
        return v;
      },
      int: (name) => {
        const v = attr(name);
        if (typeof v !== "number" || !Number.isInteger(v)) throw new UnsupportedError(`${where}: attribute '${name}' must be a compile-time integer, found ${String(v)}`);
        return v;
      },
      num: (name) => Number(attr(name)),
      bool: (name) => attr(name) === true,
      str: <T extends string>(name: string) => String(attr(name)) as T,
    };
  }
}
