// The native addon (src/native/): a kernel library compiled here with g++ is
// opened and its kernels called with typed arrays passed by pointer.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QzoError } from "../../src/util/errors.js";
import { loadNativeAddon, nativeAddonBuilt, nativeAddonPath, openKernelLibrary, type KernelLibrary } from "../../src/native/index.js";

const KERNELS = String.raw`
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <omp.h>

static thread_local std::string last_error;

static int fail(const std::string& msg, int code) {
  last_error = msg;
  return code;
}

extern "C" {

const char* qzo_manifest(void) {
  return "{\"kernels\":[\"saxpy\",\"always_fails\",\"echo\",\"bump\",\"omp_fill\",\"noop\"]}";
}

const char* qzo_last_error(void) { return last_error.empty() ? nullptr : last_error.c_str(); }

// y[i] = a * x[i] + y[i]; ptrs: x, y (float); scalars: a, n
int saxpy(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars) {
  if (n_ptrs != 2 || n_scalars != 2) return fail("saxpy: expected 2 arrays and 2 scalars", 2);
  const float* x = static_cast<const float*>(ptrs[0]);
  float* y = static_cast<float*>(ptrs[1]);
  const float a = static_cast<float>(scalars[0]);
  const int64_t n = static_cast<int64_t>(scalars[1]);
  for (int64_t i = 0; i < n; i++) y[i] = a * x[i] + y[i];
  return 0;
}

int always_fails(void**, const double* scalars, int64_t, int64_t n_scalars) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "shape mismatch: %lld rows, expected %lld",
                (long long)(n_scalars > 0 ? scalars[0] : -1), (long long)(n_scalars > 1 ? scalars[1] : -1));
  return fail(buf, 3);
}

// out (double): n_ptrs, n_scalars, then the scalars in order
int echo(void** ptrs, const double* scalars, int64_t n_ptrs, int64_t n_scalars) {
  double* out = static_cast<double*>(ptrs[0]);
  out[0] = (double)n_ptrs;
  out[1] = (double)n_scalars;
  for (int64_t i = 0; i < n_scalars; i++) out[2 + i] = scalars[i];
  return 0;
}

// adds 1 to the first element of: uint8, uint16, int32, int64, double
int bump(void** ptrs, const double*, int64_t n_ptrs, int64_t) {
  if (n_ptrs != 5) return fail("bump: expected 5 arrays", 1);
  static_cast<uint8_t*>(ptrs[0])[0] += 1;
  static_cast<uint16_t*>(ptrs[1])[0] += 1;
  static_cast<int32_t*>(ptrs[2])[0] += 1;
  static_cast<int64_t*>(ptrs[3])[0] += 1;
  static_cast<double*>(ptrs[4])[0] += 1;
  return 0;
}

// out[i] = sqrt(i) in parallel; info[0] = threads used, info[1] = sum of out
int omp_fill(void** ptrs, const double* scalars, int64_t, int64_t) {
  double* out = static_cast<double*>(ptrs[0]);
  double* info = static_cast<double*>(ptrs[1]);
  const int64_t n = static_cast<int64_t>(scalars[0]);
  int threads = 0;
  double sum = 0;
#pragma omp parallel
  {
#pragma omp single
    threads = omp_get_num_threads();
#pragma omp for reduction(+ : sum) schedule(static)
    for (int64_t i = 0; i < n; i++) {
      out[i] = std::sqrt((double)i);
      sum += out[i];
    }
  }
  info[0] = threads;
  info[1] = sum;
  return 0;
}

int noop(void** ptrs, const double*, int64_t, int64_t) {
  static_cast<int32_t*>(ptrs[0])[0] += 1;
  return 0;
}

}  // extern "C"
`;

// A library that needs a function nobody defines: dlopen(RTLD_NOW) must refuse it.
const UNRESOLVED = String.raw`
extern "C" int qzo_not_defined_anywhere(int);
extern "C" int uses_missing(void**, const double*, long, long) { return qzo_not_defined_anywhere(1); }
`;

// No qzo_manifest, no qzo_last_error.
const PLAIN = String.raw`
extern "C" int plain(void**, const double*, long, long) { return 4; }
`;

let dir: string;
let kernels: string;
let unresolved: string;
let plain: string;
let lib: KernelLibrary;

async function compile(source: string, name: string, extra: string[] = []): Promise<string> {
  const src = join(dir, `${name}.cc`);
  const out = join(dir, `lib${name}.so`);
  writeFileSync(src, source);
  await execa("g++", ["-std=c++17", "-O2", "-shared", "-fPIC", ...extra, src, "-o", out]);
  return out;
}

/** The QzoError `f` throws, checked to be a one-line message. */
function qzoError(f: () => unknown): QzoError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QzoError);
    const err = e as QzoError;
    expect(err.message).not.toContain("\n");
    return err;
  }
  throw new Error("expected a QzoError, nothing was thrown");
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "qzo-native-"));
  [kernels, unresolved, plain] = await Promise.all([
    compile(KERNELS, "kernels", ["-fopenmp"]),
    compile(UNRESOLVED, "unresolved"),
    compile(PLAIN, "plain"),
  ]);
  lib = openKernelLibrary(kernels);
});

afterAll(() => {
  lib?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("native addon", () => {
  it("is built by npm ci", () => {
    expect(nativeAddonBuilt()).toBe(true);
  });

  it("reads the manifest", () => {
    expect(JSON.parse(lib.manifest())).toEqual({ kernels: ["saxpy", "always_fails", "echo", "bump", "omp_fill", "noop"] });
    expect(lib.path).toBe(kernels);
    expect(lib.has("saxpy")).toBe(true);
    expect(lib.has("nope")).toBe(false);
  });

  it("passes typed arrays by pointer, without copies, byteOffset included", () => {
    const n = 8;
    const backing = new Float32Array(3 + n + 2).fill(-1);
    const y = backing.subarray(3, 3 + n); // byteOffset 12
    expect(y.byteOffset).toBe(12);
    y.forEach((_, i) => (y[i] = 100 * i));
    const x = Float32Array.from({ length: n }, (_, i) => i + 1);
    const rc = lib.call("saxpy", [x, y, 2, n]);
    expect(rc).toBe(0);
    expect(Array.from(y)).toEqual(Array.from({ length: n }, (_, i) => 2 * (i + 1) + 100 * i));
    // the elements around the view are untouched
    expect(Array.from(backing.subarray(0, 3))).toEqual([-1, -1, -1]);
    expect(Array.from(backing.subarray(3 + n))).toEqual([-1, -1]);
    expect(Array.from(x)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });

  it("passes the scalars as doubles in order of appearance among the non-array arguments", () => {
    const out = new Float64Array(16);
    const marker = new Int32Array(1);
    expect(lib.call("echo", [out, 1.5, -2, marker, 3n, 1e300, Number.NaN])).toBe(0);
    expect(out[0]).toBe(2); // two arrays
    expect(out[1]).toBe(5); // five scalars
    expect(Array.from(out.subarray(2, 7))).toEqual([1.5, -2, 3, 1e300, Number.NaN]);
  });

  it("hands each typed array kind to the kernel as its element type", () => {
    const u8 = new Uint8Array([254]);
    const u16 = new Uint16Array([65534]);
    const i32 = new Int32Array([-5]);
    const i64 = new BigInt64Array([2n ** 40n]);
    const f64 = new Float64Array([0.5]);
    expect(lib.call("bump", [u8, u16, i32, i64, f64])).toBe(0);
    expect([u8[0], u16[0], i32[0], i64[0], f64[0]]).toEqual([255, 65535, -4, 2n ** 40n + 1n, 1.5]);
  });

  it("returns a kernel's error code, and lastError() gives its message", () => {
    expect(lib.call("always_fails", [3, 4])).toBe(3);
    expect(lib.lastError()).toBe("shape mismatch: 3 rows, expected 4");
    const err = qzoError(() => lib.run("always_fails", [5, 6]));
    expect(err.message).toBe(`${kernels}: kernel 'always_fails' failed (code 3): shape mismatch: 5 rows, expected 6`);
    expect(lib.call("saxpy", [new Float32Array(1)])).toBe(2);
    expect(lib.lastError()).toBe("saxpy: expected 2 arrays and 2 scalars");
  });

  it("rejects arguments that are neither typed arrays nor numbers", () => {
    const err = qzoError(() => lib.call("echo", [new Float64Array(4), "x" as unknown as number]));
    expect(err.message).toBe(`${kernels}: call('echo'): argument 1 must be a typed array, a number or a bigint`);
    expect(qzoError(() => lib.call("echo", [new Float64Array(4), 2n ** 60n + 1n])).message).toContain("cannot hold exactly");
  });

  it("gives one-line errors for a missing kernel, a missing file and an unresolved symbol", () => {
    expect(qzoError(() => lib.call("not_a_kernel", [])).message).toBe(`${kernels}: exports no kernel 'not_a_kernel'`);

    const missing = join(dir, "no-such-lib.so");
    const e1 = qzoError(() => openKernelLibrary(missing));
    expect(e1.message).toMatch(new RegExp(`^${missing.replace(/[.]/g, "\\.")}: cannot load the kernel library: .*No such file or directory`));

    const e2 = qzoError(() => openKernelLibrary(unresolved));
    expect(e2.message).toContain(`${unresolved}: cannot load the kernel library:`);
    expect(e2.message).toContain("undefined symbol: qzo_not_defined_anywhere");
  });

  it("runs OpenMP inside a kernel", () => {
    const n = 1_000_000;
    const out = new Float64Array(n);
    const info = new Float64Array(2);
    expect(lib.call("omp_fill", [out, info, n])).toBe(0);
    let sum = 0;
    let wrong = 0;
    for (let i = 0; i < n; i++) {
      if (out[i] !== Math.sqrt(i)) wrong++;
      sum += out[i];
    }
    expect(wrong).toBe(0);
    expect(info[0]).toBeGreaterThanOrEqual(1);
    expect(info[1]).toBeCloseTo(sum, 3);
    console.log(`OpenMP kernel ran on ${info[0]} threads`);
  });

  it("closes a library (later use throws; closing twice is harmless)", () => {
    const again = openKernelLibrary(kernels);
    expect(again.call("noop", [new Int32Array(1)])).toBe(0);
    again.close();
    again.close();
    expect(qzoError(() => again.call("noop", [new Int32Array(1)])).message).toBe(`${kernels}: the kernel library is closed`);
  });

  it("survives closing the last OpenMP library and loading it again (the OpenMP runtime stays loaded)", async () => {
    // In a child process, so that no other open library keeps libgomp loaded;
    // unloading libgomp under its idle worker threads would crash the process.
    const script = `
      import { createRequire } from "node:module";
      const addon = createRequire(import.meta.url)(${JSON.stringify(nativeAddonPath())});
      for (let round = 0; round < 4; round++) {
        const lib = addon.open(${JSON.stringify(kernels)});
        const out = new Float64Array(100000), info = new Float64Array(2);
        if (lib.call("omp_fill", [out, info, out.length]) !== 0 || out[99999] !== Math.sqrt(99999)) process.exit(3);
        lib.close();
        await new Promise((r) => setTimeout(r, 20));
      }
      console.log("ok");`;
    const r = await execa("node", ["--input-type=module", "-e", script], { reject: false });
    expect({ exitCode: r.exitCode, signal: r.signal, stdout: r.stdout }).toEqual({ exitCode: 0, signal: undefined, stdout: "ok" });
  });

  it("a library without qzo_manifest or qzo_last_error says so", () => {
    const bare = openKernelLibrary(plain);
    try {
      expect(qzoError(() => bare.manifest()).message).toBe(`${plain}: does not export qzo_manifest`);
      expect(bare.call("plain", [])).toBe(4);
      expect(bare.lastError()).toBeNull();
      expect(qzoError(() => bare.run("plain", [])).message).toBe(`${plain}: kernel 'plain' failed (code 4)`);
    } finally {
      bare.close();
    }
  });

  it("calls a tiny kernel with little overhead (timing printed, not asserted)", () => {
    const counter = new Int32Array(1);
    const args = [counter];
    for (let i = 0; i < 100; i++) lib.call("noop", args); // warm up
    const calls = 1000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) lib.call("noop", args);
    const perCallUs = Number(process.hrtime.bigint() - t0) / 1000 / calls;
    expect(counter[0]).toBe(100 + calls);
    console.log(`native call overhead: ${perCallUs.toFixed(2)} µs per call (${calls} calls of a no-op kernel)`);
    expect(perCallUs).toBeGreaterThan(0);
  });

  it("says how to build the addon when it is not built", () => {
    const root = mkdtempSync(join(tmpdir(), "qzo-no-addon-"));
    writeFileSync(join(root, "package.json"), "{}");
    try {
      expect(nativeAddonBuilt(root)).toBe(false);
      expect(qzoError(() => loadNativeAddon(root)).message).toBe(
        "qzo: the native addon is not built (in a clone of qzo: npm ci or npm run build:native; where qzo is a dependency: npm rebuild qzo)",
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
