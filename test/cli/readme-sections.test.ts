/**
 * The commands of README.md's sections beyond the Quick start run as written, from the repository
 * root: "2-bit models (AQLM)" (quantize, train, plan), "Diffusion transformers (SD3, NF4)"
 * (quantize, distill, eval, train, sample, plan; training lowers the held-out loss) and "Training on
 * several processes" (its mpirun command, where Open MPI is installed, as .ci/run does). A file of its own so that it runs
 * beside readme.test.ts.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

import { readmeCommands as commandLines } from "../support/readme.js";

const root = new URL("../../", import.meta.url).pathname;


const severalProcesses = commandLines("Training on several processes", /^mpirun /);
const haveMpirun = (process.env["PATH"] ?? "").split(":").some((d) => d && existsSync(join(d, "mpirun")));

describe("README.md", () => {
  it("2-bit models (AQLM): every command runs as written", async () => {
    const cmds = commandLines("2-bit models (AQLM)", /^npx /);
    expect(cmds).toHaveLength(3);
    const dirs = cmds.flatMap((c) => [...c.matchAll(/--out (runs\/\S+)/g)].map((x) => join(root, x[1]!)));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    try {
      for (const cmd of cmds) {
        const r = await execa("bash", ["-c", cmd], { cwd: root, reject: false });
        expect(r.exitCode, `${cmd}\n${r.stderr.slice(-2000)}`).toBe(0);
      }
    } finally {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  }, 300_000);

  it("Diffusion transformers (SD3, NF4): every command runs as written, and training lowers the held-out loss", async () => {
    const cmds = commandLines("Diffusion transformers (SD3, NF4)", /^npx /);
    expect(cmds).toHaveLength(8);
    const outs = cmds.flatMap((c) => [...c.matchAll(/--out (runs\/\S+)/g)].map((x) => join(root, x[1]!)));
    for (const d of outs) rmSync(d, { recursive: true, force: true });
    const losses: number[] = [];
    try {
      for (const cmd of cmds) {
        const r = await execa("bash", ["-c", cmd], { cwd: root, reject: false });
        expect(r.exitCode, `${cmd}\n${r.stderr.slice(-2000)}`).toBe(0);
        if (/ eval .*--json/.test(cmd)) losses.push((JSON.parse(r.stdout) as { loss: number }).loss);
      }
      expect(losses).toHaveLength(2);
      expect(losses[1]!).toBeLessThan(0.9 * losses[0]!);
    } finally {
      for (const d of outs) rmSync(d, { recursive: true, force: true });
    }
  }, 600_000);

  // Open MPI's own settings, not the command's: as root it asks for consent, and a one-core machine has one slot.
  it.runIf(haveMpirun || process.env["QZO_REQUIRE_MPI"] === "1")("Training on several processes: the mpirun command runs as written", async () => {
    expect(severalProcesses).toHaveLength(1);
    const runDir = /--out (runs\/\S+)/.exec(severalProcesses[0]!)![1]!;
    rmSync(join(root, runDir), { recursive: true, force: true });
    const env = { OMPI_MCA_rmaps_base_oversubscribe: "1", ...(process.getuid?.() === 0 ? { OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1" } : {}) };
    try {
      const r = await execa("bash", ["-c", severalProcesses[0]!], { cwd: root, reject: false, env });
      expect(r.exitCode, r.stderr.slice(-2000)).toBe(0);
      expect(r.stderr).toContain("2 ranks (Open MPI");
      expect(existsSync(join(root, runDir, "model.gguf"))).toBe(true);
    } finally {
      rmSync(join(root, runDir), { recursive: true, force: true });
    }
  }, 300_000);

});
