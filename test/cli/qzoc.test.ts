import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url).pathname;
const qzoc = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzoc.js`, ...args], { reject: false, cwd: root });

describe("qzoc", () => {
  it("checks the shipped specs", async () => {
    const r = await qzoc("check", "models/llama.qzo", "models/opt.qzo", "models/formats/gguf.qzo");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("models/llama.qzo: ok (model llama:");
    expect(r.stdout).toContain("models/formats/gguf.qzo: ok (3 formats: q8_0, q4_0, q4_1)");
  });

  it("prints the IR of models/llama.qzo", async () => {
    const r = await qzoc("compile", "models/llama.qzo", "--emit", "ir");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^graph forward\(%0:tokens: i32\[B, T\]\) -> %\d+: f32\[B, T, vocab\]/m);
    expect(r.stdout).toMatch(/^loss lm\(/m);
  });

  it("writes every stage with -o", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzoc-"));
    const r = await qzoc("compile", "models/opt.qzo", "--emit", "ast,ir", "-o", dir);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.split("\n").sort()).toEqual([`wrote ${dir}/opt.ast.json`, `wrote ${dir}/opt.ir.json`, `wrote ${dir}/opt.ir.txt`]);
  });

  it("renders diagnostics with the source line and a caret, exit code 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzoc-"));
    const f = join(dir, "bad.qzo");
    writeFileSync(f, "model m {\n  config { dim: int = 4 }\n  param w: f32[dim, dimm]\n}\n");
    const r = await qzoc("check", f);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe([`${f}:3:21: error: unknown name 'dimm'`, "    param w: f32[dim, dimm]", "                      ^^^^", "hint: did you mean 'dim'?", "1 error"].join("\n"));
  });

  it("reports usage errors with exit code 2 and never a stack trace", async () => {
    for (const args of [["bogus"], ["compile", "models/llama.qzo", "--emit", "kernels2"], ["check", "--set", "nonsense", "models/llama.qzo"]]) {
      const r = await qzoc(...args);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("reports a missing file in one line, exit code 1", async () => {
    const r = await qzoc("check", "no/such.qzo");
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toBe("qzoc: no/such.qzo: no such file");
  });

  it("fmt --check passes on the shipped specs", async () => {
    const r = await qzoc("fmt", "--check", "models/llama.qzo", "models/opt.qzo", "models/formats/gguf.qzo", "models/formats/gptq.qzo", "models/formats/nf4.qzo");
    expect(r.exitCode).toBe(0);
  });
});
