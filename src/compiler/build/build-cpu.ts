/**
 * Builds generated C++ into a shared library with the system compiler (g++ by
 * default, $CXX otherwise), cached by a hash of the source, the flags and the
 * compiler's version in a per-user cache directory ($QZO_CACHE_DIR, else
 * $XDG_CACHE_HOME/qzo, else ~/.cache/qzo). A compile error is reported with the
 * generated line it points at.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { execaSync } from "execa";
import { QzoError } from "../../util/errors.js";

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
    throw new QzoError(`no C++ compiler found (tried '${cxx}'): install g++ (Debian: apt-get install g++) or set CXX`);
  }
}

export interface BuiltLibrary {
  path: string;
  hash: string;
  cached: boolean;
  sourcePath: string;
}

export function buildCpuLibrary(source: string, name = "kernels"): BuiltLibrary {
  const { cxx, version } = compiler();
  const hash = createHash("sha256").update(source).update("\0").update(CPU_FLAGS.join(" ")).update("\0").update(version).digest("hex").slice(0, 20);
  const dir = join(cacheDir(), `cpu-${hash}`);
  const lib = join(dir, `lib${name}.so`);
  const src = join(dir, `${name}.cpp`);
  if (existsSync(lib)) return { path: lib, hash, cached: true, sourcePath: src };
  mkdirSync(dir, { recursive: true });
  writeFileSync(src, source);
  const tmp = `${lib}.tmp-${process.pid}`;
  const r = execaSync(cxx, [...CPU_FLAGS, "-o", tmp, src], { reject: false });
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
  const line = readFileSync(src, "utf8").split("\n")[Number(m[2]) - 1]?.trim() ?? "";
  return `the generated C++ did not compile: ${src}:${m[2]}:${m[3]}: ${m[4]} [in: ${line}]`;
}
