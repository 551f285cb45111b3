#!/usr/bin/env node
// Builds the native addon (build/Release/qzo_native.node) with cmake-js, offline:
// package.json's "binary": {"napi_versions": [8]} makes cmake-js take the
// Node-API headers from the node-api-headers package instead of downloading.
// Run by `npm ci` / `npm install` (the "install" script) and `npm run build:native`.
// Before handing over to cmake it checks for the tools, so that a machine without
// them gets one line saying what to install rather than a CMake error log.
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

function fail(message) {
  console.error(`qzo: ${message}`);
  process.exit(1);
}

function packageRoot() {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) return dir;
    const up = dirname(dir);
    if (up === dir) fail("cannot find package.json above src/native/build-addon.mjs");
    dir = up;
  }
}

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The path of a program (a name looked up on PATH, or a path), or undefined. */
function which(program) {
  if (program.includes("/")) return isExecutable(resolve(program)) ? resolve(program) : undefined;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && isExecutable(join(dir, program))) return join(dir, program);
  }
  return undefined;
}

const INSTALL_CXX = "install a C++17 compiler (Debian/Ubuntu: apt-get install g++) or set CXX to one";

if (process.platform === "win32") fail("the native addon needs a POSIX system (dlopen); Windows is not supported");

const cxxEnv = (process.env.CXX ?? "").trim();
if (cxxEnv) {
  const program = cxxEnv.split(/\s+/)[0];
  if (!which(program)) fail(`no C++ compiler: CXX=${cxxEnv} is not an executable; ${INSTALL_CXX}`);
} else if (!["c++", "g++", "clang++"].some((c) => which(c))) {
  fail(`no C++ compiler found (looked for c++, g++, clang++ on PATH); ${INSTALL_CXX}`);
}
if (!which("cmake")) fail("cmake not found on PATH; install CMake 3.15 or newer (Debian/Ubuntu: apt-get install cmake)");
if (!which("make") && !which("ninja")) fail("neither make nor ninja found on PATH; install one (Debian/Ubuntu: apt-get install make)");

const root = packageRoot();
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
if (!pkg.binary?.napi_versions) fail("package.json lacks \"binary\": {\"napi_versions\": [8]}; cmake-js would download Node headers");

let cmakeJs;
try {
  const require = createRequire(join(root, "package.json"));
  const cmakeJsPkg = require.resolve("cmake-js/package.json");
  cmakeJs = join(dirname(cmakeJsPkg), JSON.parse(readFileSync(cmakeJsPkg, "utf8")).bin["cmake-js"]);
} catch {
  fail("cmake-js is not installed; run npm ci first");
}
if (!isAbsolute(cmakeJs)) cmakeJs = resolve(root, cmakeJs);

// `compile` configures when needed and builds incrementally; if that fails it
// retries with a clean rebuild (e.g. a build/ folder configured elsewhere).
const args = [cmakeJs, "compile", "--directory", root, "--out", join(root, "build"), "--log-level", "warn"];
const r = spawnSync(process.execPath, args, { stdio: "inherit", cwd: root });
if (r.error) fail(`cannot run cmake-js: ${r.error.message}`);
if (r.status !== 0) fail(`building the native addon failed (cmake-js exit ${r.status ?? r.signal}); see the output above`);
