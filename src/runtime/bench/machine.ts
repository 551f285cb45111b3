/** The machine a benchmark ran on, recorded beside its numbers. */
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { execaSync } from "execa";

export interface MachineInfo {
  cpu: string;
  cores: number;
  availableParallelism: number;
  memoryGiB: number;
  node: string;
  gxx: string;
  /** The GPU(s) nvidia-smi names, when there is one. */
  gpu?: string;
  platform: string;
  date: string;
  loadavgAtStart: number[];
}

function firstLine(cmd: string, args: string[]): string | undefined {
  try {
    const r = execaSync(cmd, args, { reject: false, timeout: 10_000 });
    return r.exitCode === 0 ? (String(r.stdout).split("\n").find((l) => l.trim()) ?? undefined) : undefined;
  } catch {
    return undefined;
  }
}

export const roundLoad = () => loadavg().map((x) => Math.round(x * 100) / 100);

export function machineInfo(withGpu = false): MachineInfo {
  const c = cpus();
  const gpu = withGpu ? firstLine("nvidia-smi", ["--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]) : undefined;
  return {
    cpu: c[0]?.model ?? "unknown",
    cores: c.length,
    availableParallelism: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    gxx: firstLine(process.env["CXX"] ?? "g++", ["--version"]) ?? "unknown",
    ...(gpu ? { gpu } : {}),
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
    loadavgAtStart: roundLoad(),
  };
}
