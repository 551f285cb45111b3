/**
 * qzo as a package: `npm pack` it, install the tarball into an empty project (the install builds
 * the native addon), run README's TypeScript-section example there as written, type-check a
 * program against the shipped declarations (including one call the types must reject), and run
 * the linked `qzo` and `qzoc` commands.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readmeSection } from "../support/readme.js";

const root = new URL("../../", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "qzo-package-"));
const project = join(dir, "project");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The ```js block of README's "Use it from TypeScript" section. */
function readmeExample(): string {
  const block = /```js\n([\s\S]*?)```/.exec(readmeSection("Use it from TypeScript"));
  if (!block) throw new Error("README.md has no ```js block under '## Use it from TypeScript'");
  return block[1]!;
}

beforeAll(async () => {
  // dist/ is built by the test command; --ignore-scripts keeps `prepare` from rewriting it under the other tests.
  await execa("npm", ["pack", "--ignore-scripts", "--pack-destination", dir], { cwd: root });
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
  if (!tarball) throw new Error(`npm pack wrote no tarball into ${dir}`);
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "uses-qzo", version: "1.0.0", private: true, type: "module" }));
  await execa("npm", ["install", join(dir, tarball), "--no-audit", "--no-fund", "--prefer-offline"], { cwd: project });
}, 300_000);

describe("the packed package in a new project", () => {
  it("runs README's example as written", async () => {
    const example = readmeExample();
    expect(example.split("\n").filter((l) => l.trim()).length).toBeLessThanOrEqual(16);
    writeFileSync(join(project, "example.mjs"), example);
    const r = await execa("node", ["example.mjs"], { cwd: project, reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^Once upon a time/);
    expect(lines.filter((l) => /^step (10|20) loss \d+\.\d{3}$/.test(l))).toHaveLength(2);
    expect(lines.at(-1)).toMatch(/^run\/model\.gguf \d+\.\d{4}$/);
    expect(readdirSync(join(project, "run")).sort()).toEqual(expect.arrayContaining(["loss.svg", "log.jsonl", "model.gguf", "run.json", "scales.safetensors"]));
  }, 180_000);

  it("ships declarations that type a program and reject a wrong call", async () => {
    writeFileSync(
      join(project, "typed.ts"),
      [
        'import { compileSpec, loadModel, QzoError, train, type PerplexityResult, type TrainRunResult } from "qzo";',
        'const score: PerplexityResult = loadModel("m.gguf").perplexity("Once upon a time");',
        "const nll: number = score.nll;",
        'const run: Promise<TrainRunResult> = train({ model: "m.gguf", data: "d.txt", out: "run", steps: 10, signal: AbortSignal.timeout(1000) });',
        'const source: string = compileSpec("model.qzo", { target: "cuda" }).source;',
        "const failed = (e: unknown) => e instanceof QzoError && e.exitCode === 1;",
        "// @ts-expect-error: steps is a number",
        'void train({ model: "m.gguf", data: "d.txt", out: "run", steps: "ten" });',
        "export { nll, run, source, failed };",
        "",
      ].join("\n"),
    );
    const tsc = join(root, "node_modules/typescript/bin/tsc");
    const r = await execa(
      "node",
      [tsc, "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--typeRoots", join(root, "node_modules/@types"), "--types", "node", "typed.ts"],
      { cwd: project, reject: false },
    );
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  }, 120_000);

  it("links the qzo and qzoc commands", async () => {
    const c = await execa("npx", ["--no-install", "qzoc", "check", "node_modules/qzo/models/llama.qzo"], { cwd: project, reject: false });
    expect(c.exitCode, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/llama\.qzo: ok/);
    const q = await execa("npx", ["--no-install", "qzo", "generate", "--model", "node_modules/qzo/models/weights/stories260K/stories260K-q4_0.gguf", "--prompt", "Once", "-n", "8", "--temperature", "0"], { cwd: project, reject: false });
    expect(q.exitCode, q.stderr).toBe(0);
    expect(q.stdout).toMatch(/^Once/);
  }, 120_000);
});
