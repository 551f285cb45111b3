/**
 * README.md as a user meets it after `npm ci`: every command of its Quick start runs as written
 * (through npx, from the repository root, on the bundled model and data), so does its mpirun command
 * (where Open MPI is installed, as .ci/run does), and every command and flag its Commands section
 * shows exists in that command's --help.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

import { readmeSection } from "../support/readme.js";

const root = new URL("../../", import.meta.url).pathname;

/** The indented command lines of a section, comments after `#` dropped. */
function commandLines(title: string, prefix: RegExp): string[] {
  return readmeSection(title)
    .split("\n")
    .filter((l) => /^ {4}\S/.test(l))
    .map((l) => l.trim().replace(/\s+#.*$/, ""))
    .filter((l) => prefix.test(l));
}

const quickStart = commandLines("Quick start", /^npx /);
const severalProcesses = commandLines("Training on several processes", /^mpirun /);
const haveMpirun = (process.env["PATH"] ?? "").split(":").some((d) => d && existsSync(join(d, "mpirun")));
const synopsis = commandLines("Commands", /^qzoc? /);

describe("README.md", () => {
  it("Quick start: every command runs as written", async () => {
    expect(quickStart.length).toBeGreaterThanOrEqual(6);
    const runDir = /--out (runs\/\S+)/.exec(quickStart.join("\n"))?.[1];
    if (runDir) rmSync(join(root, runDir), { recursive: true, force: true });
    try {
      for (const cmd of quickStart) {
        const r = await execa("bash", ["-c", cmd], { cwd: root, reject: false });
        expect(r.exitCode, `${cmd}\n${r.stderr.slice(-2000)}`).toBe(0);
      }
    } finally {
      if (runDir) rmSync(join(root, runDir), { recursive: true, force: true });
    }
  }, 600_000);

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

  it.each(synopsis.map((l) => [l.split(/\s+/).slice(0, 2).join(" "), l]))("Commands: %s exists with the flags shown", async (name, line) => {
    const [bin, command] = name.split(" ") as [string, string];
    const r = await execa("npx", ["--no-install", bin, command, "--help"], { cwd: root, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const flag of line.match(/--[a-z][a-z-]*/g) ?? []) expect(r.stdout, `${name} ${flag}`).toContain(flag);
  }, 60_000);
});
