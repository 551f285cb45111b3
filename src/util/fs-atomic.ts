import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { QzoError } from "./errors.js";

/** Removes a temporary file if it is there; never throws (the error being reported matters more). */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // e.g. ENOTDIR: the temporary file was never created
  }
}

/**
 * Writes a file so that readers see either the old or the whole new content:
 * write to a temporary file beside it, then rename over the target.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    removeQuietly(tmp);
    throw e;
  }
}

/**
 * Streams a file in pieces (`write` calls `put` for each) to a temporary file beside `path`,
 * syncs it and renames it into place; on any failure the temporary file is removed and the error
 * is a QzoError ("PATH: cannot write the WHAT: ..."; a QzoError from `write` passes as it is).
 */
export function writeStreamAtomic(path: string, what: string, write: (put: (bytes: Uint8Array) => void) => void): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  let fd: number | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    fd = openSync(tmp, "w");
    const put = (b: Uint8Array) => {
      for (let done = 0; done < b.byteLength; ) done += writeSync(fd!, b, done, b.byteLength - done);
    };
    write(put);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    removeQuietly(tmp);
    if (e instanceof QzoError) throw e;
    throw new QzoError(`${path}: cannot write the ${what}: ${(e as Error).message}`);
  }
}

/** Temporary files are named NAME.tmp-<pid>-<time> (exports: .NAME.tmp-<pid>-<time>). */
const TEMP = /^\.?(.+)\.tmp-(\d+)-\d+$/;

/** Whether a process is running (ours included). */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The file a temporary file stands for, when a process that is no longer running left it. */
export function staleTempOf(name: string): string | undefined {
  const m = TEMP.exec(name);
  return m && !processAlive(Number(m[2])) ? m[1] : undefined;
}

/** Removes the temporary files of `base` (every file when omitted) that dead processes left in `dir`. */
export function removeStaleTemps(dir: string, base?: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names.sort()) {
    const of = staleTempOf(name);
    if (of === undefined || (base !== undefined && of !== base)) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
