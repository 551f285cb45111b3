/**
 * Whether this machine can run CUDA kernels at all, without building anything (for --device auto):
 * a CUDA driver (libcuda.so.1) and a device node. The generated library itself says more once
 * loaded (qzo_cuda_status: no device, too old a driver or GPU).
 */
import { existsSync, readdirSync } from "node:fs";
import { execaSync } from "execa";

let found: { ok: boolean; reason: string } | undefined;

/** Looked up once per process (a scan of /dev and possibly `ldconfig -p`). */
export function cudaAvailable(): { ok: boolean; reason: string } {
  found ??= lookForCuda();
  return found;
}

function lookForCuda(): { ok: boolean; reason: string } {
  if (!findLibcuda()) return { ok: false, reason: "no CUDA driver (libcuda.so.1) found" };
  const nodes = existsSync("/dev") ? readdirSync("/dev").filter((n) => /^nvidia\d+$/.test(n)) : [];
  if (nodes.length === 0 && !existsSync("/dev/dxg")) return { ok: false, reason: "no CUDA device (no /dev/nvidia* device node)" };
  return { ok: true, reason: `CUDA driver found, ${nodes.length || 1} device node(s)` };
}

function findLibcuda(): boolean {
  const dirs = [
    ...(process.env["LD_LIBRARY_PATH"] ?? "").split(":").filter(Boolean),
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/nvidia/lib64",
    "/usr/lib/wsl/lib",
    "/usr/lib/aarch64-linux-gnu",
  ];
  if (dirs.some((d) => existsSync(`${d}/libcuda.so.1`))) return true;
  try {
    return /libcuda\.so\.1\b/.test(execaSync("ldconfig", ["-p"], { reject: false }).stdout ?? "");
  } catch {
    return false;
  }
}
