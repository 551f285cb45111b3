/**
 * README.md as a user meets it after `npm ci`: every command of its Quick start runs as written
 * (through npx, from the repository root, on the bundled model and data), and every command and
 * flag its Commands section shows exists in that command's --help. (readme-sections.test.ts runs
 * the commands of its other sections.)
 */
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

import { readmeCommands as commandLines } from "../support/readme.js";

const root = new URL("../../", import.meta.url).pathname;

const quickStart = commandLines("Quick start", /^npx /);
const synopsis = commandLines("Commands", /^qzoc? /);

describe("README.md", () => {
  it("the build leaves qzo and qzoc executable (npx runs them as files)", () => {
    const bins = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).bin as Record<string, string>;
    for (const [name, file] of Object.entries(bins)) expect(statSync(join(root, file)).mode & 0o111, name).toBe(0o111);
  });

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

  it.each(synopsis.map((l) => [l.split(/\s+/).slice(0, 2).join(" "), l]))("Commands: %s exists with the flags shown", async (name, line) => {
    const [bin, command] = name.split(" ") as [string, string];
    // The file npx runs for `bin` (the Quick start above runs npx itself), without npx's start-up.
    const file = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")).bin as Record<string, string>)[bin]!;
    const r = await execa("node", [join(root, file), command, "--help"], { cwd: root, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    for (const flag of line.match(/--[a-z][a-z-]*/g) ?? []) expect(r.stdout, `${name} ${flag}`).toContain(flag);
  }, 60_000);
});
