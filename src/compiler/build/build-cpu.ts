/**
 * Builds generated C++ into a shared library with the system compiler (g++ by default, $CXX
 * otherwise), cached by a hash of every generated file (the program and the headers it includes),
 * the flags and the compiler's version, in a per-user cache directory ($QZO_CACHE_DIR, else
 * $XDG_CACHE_HOME/qzo, else ~/.cache/qzo). The files are written there, so each cached library
 * sits beside the exact source it was built from. A compile error is reported with the generated
 * line it points at.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { execaSync } from "execa";
import { QzoError, UnsupportedError } from "../../util/errors.js";
import type { GeneratedFile } from "../codegen/target.js";

export const CPU_FLAGS = ["-O3", "-march=native", "-std=c++17", "-fopenmp", "-shared", "-fPIC"];

export function cacheDir(): string {
  return process.env["QZO_CACHE_DIR"] ?? join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "qzo");
}

function compiler(): { cxx: string; version: string } {
  const cxx = process.env["CXX"] ?? "g++";
  try {
    const r = execaSync(cxx, ["--version"]);
    return { cxx, version: r.stdout.split("\n")[0] ?? "" };
  } catch {
    throw new UnsupportedError(`no C++ compiler found (tried '${cxx}'): install g++ (Debian: apt-get install g++) or set CXX`);
  }
}

export interface BuiltLibrary {
  path: string;
  hash: string;
  cached: boolean;
  sourcePath: string;
}

/** sha256 of generated files and the build's other inputs, shortened. */
export function filesHash(files: readonly GeneratedFile[], ...rest: string[]): string {
  const h = createHash("sha256");
  for (const f of files) h.update(f.path).update("\0").update(f.text).update("\0");
  for (const r of rest) h.update(r).update("\0");
  return h.digest("hex").slice(0, 20);
}

/** Writes generated files under `dir` (the first is the program). */
export function writeGenerated(dir: string, files: readonly GeneratedFile[]): string {
  for (const f of files) {
    mkdirSync(dirname(join(dir, f.path)), { recursive: true });
    writeFileSync(join(dir, f.path), f.text);
  }
  return join(dir, files[0]!.path);
}

export function buildCpuLibrary(code: { files: readonly GeneratedFile[] }, name = "kernels"): BuiltLibrary {
  const { cxx, version } = compiler();
  const hash = filesHash(code.files, CPU_FLAGS.join(" "), version);
  const dir = join(cacheDir(), `cpu-${hash}`);
  const lib = join(dir, `lib${name}.so`);
  const src = join(dir, code.files[0]!.path);
  if (existsSync(lib)) return { path: lib, hash, cached: true, sourcePath: src };
  writeGenerated(dir, code.files);
  const tmp = `${lib}.tmp-${process.pid}`;
  const r = execaSync(cxx, [...CPU_FLAGS, "-I", dir, "-o", tmp, src], { reject: false });
  if (r.exitCode !== 0) {
    rmSync(tmp, { force: true });
    throw new QzoError(compileErrorLine(String(r.stderr), src));
  }
  renameSync(tmp, lib);
  return { path: lib, hash, cached: false, sourcePath: src };
}

/** The first compiler error as one line, with the generated source line it names. */
function compileErrorLine(stderr: string, src: string): string {
  const m = /^(.*?):(\d+):(\d+): (?:fatal )?error: (.*)$/m.exec(stderr);
  if (!m) return `the generated C++ (${src}) did not compile: ${stderr.split("\n").find((l) => l.trim()) ?? "no message"}`;
  const file = m[1]!;
  const line = readFileSync(existsSync(file) ? file : src, "utf8").split("\n")[Number(m[2]) - 1]?.trim() ?? "";
  return `the generated C++ did not compile: ${file}:${m[2]}:${m[3]}: ${m[4]} [in: ${line}]`;
}
