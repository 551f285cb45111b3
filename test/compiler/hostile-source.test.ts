/**
 * No text of a spec or a model file becomes generated code. A model file names an architecture,
 * never a path: only the shipped specs can be selected by it. Paths, names and source locations
 * reach the generated C++ and CUDA only as escaped comments and string literals, so a spec whose
 * path holds newlines, comment terminators, '#', quotes and backslashes generates the same code as
 * the same spec at a clean path; numbers that are not finite or not in range are refused with a
 * located error before any code is generated.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, execaSync } from "execa";
import { describe, expect, it } from "vitest";
import { checkFile } from "../../src/compiler/check.js";
import { CompileError, diagnosticHeadline } from "../../src/compiler/diagnostics.js";
import { cCommentText, cDouble, cIdentifier, cInt, cStringLiteral } from "../../src/compiler/codegen/c/literal.js";
import { TARGETS } from "../../src/compiler/codegen/targets.js";
import { compileArtifact } from "../../src/compiler/pipeline.js";
import { openKernelLibrary } from "../../src/native/index.js";
import { specForArchitecture } from "../../src/runtime/load/bind.js";

const root = new URL("../../", import.meta.url).pathname;
const SHARED = join(root, "..", "shared", "models");
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });
const qzoc = (cwd: string, ...args: string[]) => execa("node", [`${root}dist/src/cli/qzoc.js`, ...args], { reject: false, cwd });

/** A directory name that would break out of a comment, a string literal or a raw string. */
const HOSTILE = 'evil\n__attribute__((constructor)) static void pwn(){system("touch PWNED");} #define X "q\'\\ )qzojson" ??/ *';

const SMALL = { dim: 64, hidden: 128, n_layers: 2, n_heads: 4, n_kv_heads: 2, vocab: 128, seq_len: 32, weight: "q4_0" };

/** The shipped llama spec and its formats, copied under `dir`. */
function copySpec(dir: string): string {
  mkdirSync(dir, { recursive: true });
  cpSync(join(root, "models", "formats"), join(dir, "formats"), { recursive: true });
  cpSync(join(root, "models", "llama.qzo"), join(dir, "llama.qzo"));
  return join(dir, "llama.qzo");
}

function module(spec: string) {
  const r = checkFile(spec, SMALL);
  if (r.diagnostics.length) throw new CompileError(r.diagnostics);
  return r.modules[0]!;
}

/** The code of a C++/CUDA source: comments removed by the compiler's own preprocessor, literals emptied. */
function codeOf(source: string): string {
  const r = execaSync("g++", ["-x", "c++", "-fpreprocessed", "-dD", "-E", "-P", "-"], { input: source });
  return r.stdout.replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/g, (lit) => (lit[0] === '"' ? '""' : lit));
}

describe("a model file cannot select a spec outside the shipped set", () => {
  it("refuses architecture names that are paths, hold control characters or name no shipped spec", () => {
    expect(specForArchitecture("llama", "m.gguf")).toBe(join(root, "models", "llama.qzo"));
    for (const arch of ["../llama", "../../test/fixtures/specs/gpt2_tiny", "formats/gguf", "/etc/passwd", "llama\n", "LLAMA", "", "llama.qzo"]) {
      expect(() => specForArchitecture(arch, "m.gguf"), arch).toThrow(/m\.gguf: no shipped spec for architecture/);
    }
  });

  it("qzo refuses a GGUF and a Hugging Face directory whose architecture walks out of models/, in one line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-arch-"));
    // The same length as "llama", so the rest of the file stays valid.
    const gguf = readFileSync(join(SHARED, "gguf", "stories260K-f32.gguf"));
    const at = gguf.indexOf(Buffer.from("general.architecture"));
    const value = gguf.indexOf(Buffer.from("llama"), at);
    Buffer.from("../ev").copy(gguf, value);
    writeFileSync(join(dir, "m.gguf"), gguf);
    writeFileSync(join(dir, "ev.qzo"), readFileSync(join(root, "models", "llama.qzo")));
    const g = await qzo("perplexity", "--model", join(dir, "m.gguf"), "--text", join(root, "README.md"));
    expect(g.exitCode).toBe(1);
    expect(g.stderr.trim().split("\n")).toHaveLength(1);
    expect(g.stderr).toMatch(/no shipped spec for architecture "\.\.\/ev"/);

    const hf = join(dir, "hf");
    cpSync(join(SHARED, "hf", "stories260K"), hf, { recursive: true });
    const config = JSON.parse(readFileSync(join(hf, "config.json"), "utf8"));
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...config, model_type: "../../ev\nline two" }));
    const h = await qzo("perplexity", "--model", hf, "--text", join(root, "README.md"));
    expect(h.exitCode).toBe(1);
    expect(h.stderr.trim().split("\n")).toHaveLength(1);
    expect(h.stderr).toMatch(/no shipped spec for architecture "\.\.\/\.\.\/ev\\nline two"/);
  }, 60_000);
});

describe("text reaches generated source only escaped", () => {
  it("escapes comment text and string literals exactly", () => {
    expect(cCommentText('a\nb */ c\\ "d" ??/')).toBe("a_b * / c/ 'd' ? ?/");
    // Compiled and printed by a real C++ program: the literal's value is the text, byte for byte.
    const text = HOSTILE + " é \u2028 \0 end";
    const dir = mkdtempSync(join(tmpdir(), "qzo-lit-"));
    writeFileSync(join(dir, "p.cpp"), `#include <cstdio>\nint main() { static const char s[] = ${cStringLiteral(text)}; fwrite(s, 1, sizeof(s) - 1, stdout); }\n`);
    execaSync("g++", ["-std=c++17", "-o", join(dir, "p"), join(dir, "p.cpp")]);
    expect(execaSync(join(dir, "p"), { encoding: "buffer" }).stdout).toEqual(new Uint8Array(Buffer.from(text, "utf8")));
  });

  it("a spec at a hostile path generates the same C++ and CUDA code as at a clean path", () => {
    const base = mkdtempSync(join(tmpdir(), "qzo-hostile-"));
    const clean = module(copySpec(join(base, "clean")));
    const evil = module(copySpec(join(base, HOSTILE)));
    expect(evil.source).toContain("\n__attribute__");
    const graphs = ["lm", "forward"];
    for (const target of [TARGETS.cpu, TARGETS.cuda]) {
      const a = target.generate(compileArtifact(clean, { graphs })).files[0]!.text;
      const b = target.generate(compileArtifact(evil, { graphs })).files[0]!.text;
      expect(b).not.toBe(a);
      const code = codeOf(b);
      expect(code).not.toMatch(/constructor|system|PWNED/);
      expect(code).toBe(codeOf(a));
    }
  }, 60_000);

  it("the compiled library's manifest holds the hostile path exactly, and nothing ran", () => {
    const base = mkdtempSync(join(tmpdir(), "qzo-hostile-"));
    const evil = module(copySpec(join(base, HOSTILE)));
    const lib = openKernelLibrary(TARGETS.cpu.build(TARGETS.cpu.generate(compileArtifact(evil, { graphs: ["forward"] }))).path);
    expect(JSON.parse(lib.manifest()).source).toBe(evil.source);
    expect(existsSync(join(root, "PWNED"))).toBe(false);
    expect(existsSync("PWNED")).toBe(false);
  }, 120_000);
});

describe("numbers that cannot be compiled are refused where they come from", () => {
  const headlines = (spec: string, set: Record<string, string | number>) => {
    const r = checkFile(spec, set);
    return r.diagnostics.map(diagnosticHeadline);
  };
  const llama = join(root, "models", "llama.qzo");

  it("non-finite and out-of-range config values, from --set or the spec text", () => {
    expect(headlines(llama, { rope_theta: "Infinity" }).join("\n")).toMatch(/llama\.qzo:\d+:\d+: error: config entry 'rope_theta' is Infinity \(from Infinity\); a float must be finite/);
    expect(headlines(llama, { rope_theta: 0 }).join("\n")).toMatch(/attribute 'theta' of 'rope' is 0; it must be greater than 0/);
    expect(headlines(llama, { norm_eps: -1e-5 }).join("\n")).toMatch(/attribute 'eps' of 'rmsnorm' is -0\.00001; it must be at least 0/);
    expect(headlines(llama, { dim: 2 ** 60 }).join("\n")).toMatch(/config entry 'dim' is \d+ \(from \d+\); an int must lie between -2\^53 and 2\^53/);
    expect(headlines(llama, { dim: -64, n_heads: 1, n_kv_heads: 1 }).join("\n")).toMatch(/dimension dim of parameter '\w+' is -64; a dimension must be positive/);
    expect(headlines(llama, { n_layers: -1 }).join("\n")).toMatch(/the layers 0\.\.-1 of 'l' are -1; parameter arrays have 0 to 4096 layers from 0 on/);
    // No layers is a model too (a spec's per-layer arrays may cover all but the last block).
    expect(headlines(llama, { n_layers: 0 })).toEqual([]);
    expect(headlines(llama, { n_layers: 1e9 }).join("\n")).toMatch(/the layers 0\.\.1000000000 of 'l' are 1000000000/);

    const dir = mkdtempSync(join(tmpdir(), "qzo-num-"));
    const spec = join(copySpec(dir));
    writeFileSync(spec, readFileSync(spec, "utf8").replace(/rope_theta: float = [^ ]+/, "rope_theta: float = 1e999"));
    expect(headlines(spec, {}).join("\n")).toMatch(/llama\.qzo:\d+:\d+: error: config entry 'rope_theta' is Infinity; a float must be finite/);
  });

  it("qzoc reports them in located diagnostics, exit 1, and writes nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-num-"));
    const r = await qzoc(dir, "compile", llama, "--emit", "cpp", "--set", "rope_theta=Infinity", "-o", join(dir, "out"));
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/^.*llama\.qzo:\d+:\d+: error: config entry 'rope_theta' is Infinity/m);
    expect(existsSync(join(dir, "out"))).toBe(false);
  }, 30_000);

  it("the C emitter itself refuses what it cannot print exactly (the last line of defence)", () => {
    expect(() => cInt(2 ** 60, "config entry 'dim'")).toThrow(/^config entry 'dim' is 1152921504606847000, not an integer between -2\^53 and 2\^53; it cannot be compiled$/);
    expect(() => cInt(1.5, "heads")).toThrow(/^heads is 1\.5, not an integer/);
    expect(() => cDouble(Number.NaN, "theta")).toThrow(/^theta is NaN, not a finite number; it cannot be compiled$/);
    expect(() => cIdentifier("x; system(\"id\")", "graph")).toThrow(/^graph "x; system\(\\"id\\"\)" is not an identifier; it cannot be compiled$/);
  });
});
