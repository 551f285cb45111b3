/**
 * N ranks in one process, for testing what the ranks agree on without MPI: the i-th collective
 * call of every rank meets the i-th of the others; a reduction or broadcast resolves once all
 * ranks have called it.
 */
import type { Communicator, ReduceOp } from "../../src/runtime/parallel/communicator.js";

interface Meeting {
  inputs: (Float64Array | Uint8Array | undefined)[];
  resolvers: ((r: Float64Array | Uint8Array) => void)[];
}

export function localWorld(size: number): Communicator[] {
  const meetings = new Map<number, Meeting>();
  const meet = (rank: number, n: number, input: Float64Array | Uint8Array, finish: (inputs: (Float64Array | Uint8Array)[]) => Float64Array | Uint8Array) =>
    new Promise<Float64Array | Uint8Array>((resolve) => {
      const m = meetings.get(n) ?? { inputs: new Array(size).fill(undefined), resolvers: [] };
      meetings.set(n, m);
      m.inputs[rank] = input;
      m.resolvers.push(resolve);
      if (m.resolvers.length < size) return;
      meetings.delete(n);
      const out = finish(m.inputs as (Float64Array | Uint8Array)[]);
      for (const r of m.resolvers) r(out.slice());
    });
  const reduce = (op: ReduceOp) => (inputs: (Float64Array | Uint8Array)[]) =>
    inputs[0]!.map((_, i) => {
      const xs = inputs.map((v) => v[i]!);
      return op === "sum" ? xs.reduce((a, b) => a + b, 0) : op === "max" ? Math.max(...xs) : Math.min(...xs);
    });
  return Array.from({ length: size }, (_, rank) => {
    let calls = 0;
    let sent = 0;
    return {
      rank,
      size,
      description: `local world, ${size} ranks`,
      get bytesSent() {
        return sent;
      },
      allreduce(values: Float64Array, op: ReduceOp) {
        sent += values.byteLength;
        return meet(rank, calls++, Float64Array.from(values), reduce(op)) as Promise<Float64Array>;
      },
      broadcast(bytes: Uint8Array, root: number) {
        if (rank === root) sent += bytes.byteLength;
        return meet(rank, calls++, Uint8Array.from(bytes), (inputs) => inputs[root]!) as Promise<Uint8Array>;
      },
      finalize: () => undefined,
    };
  });
}
