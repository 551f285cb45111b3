/**
 * A run directory that cannot lose data: one trainer at a time (a lock file holding its pid),
 * temporary files of dead processes removed, a complete checkpoint that a kill left under its
 * temporary name recovered, and a fresh start refused where an earlier run left anything.
 *
 * Every file of a run is written to `NAME.tmp-<pid>-<time>` and renamed into place; a process
 * killed in between leaves that temporary file, which the next run in the directory removes (or, for
 * the first scales checkpoint, which has nothing to fall back to, renames into place when complete).
 */
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { QzoError } from "../../util/errors.js";
import { processAlive, removeStaleTemps, staleTempOf } from "../../util/fs-atomic.js";
import { readSafetensors } from "../model-files/safetensors.js";
import { BEST_FILE, LOG_FILE, SCALES_FILE } from "./trainer.js";

export const RUN_FILE = "run.json";
const LOCK_FILE = ".lock";

/** The files whose presence means the directory holds a run. */
const RUN_FILES = [SCALES_FILE, BEST_FILE, LOG_FILE, RUN_FILE];


/** Creates the directory (following a link only to an existing directory). */
function ensureDir(dir: string): void {
  let link: string | undefined;
  try {
    if (lstatSync(dir).isSymbolicLink()) link = dir;
  } catch {
    link = undefined;
  }
  if (link && !existsSync(dir)) throw new QzoError(`${dir}: a link to a directory that does not exist`, 2);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new QzoError(`${dir}: exists and is not a directory`, 2);
  try {
    mkdirSync(link ? realpathSync(dir) : dir, { recursive: true });
  } catch (e) {
    throw new QzoError(`${dir}: cannot create the run directory: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** Takes the directory's lock, or says which live process holds it. */
function lock(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new QzoError(`${path}: cannot create the lock file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      const holder = Number.parseInt(readFileSync(path, "utf8"), 10);
      if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) {
        throw new QzoError(`${dir}: another qzo train (pid ${holder}) is using this run directory; wait for it or choose another --out`, 2);
      }
      rmSync(path, { force: true });
    }
  }
  throw new QzoError(`${path}: cannot take the lock`);
}

/** Whether a file is a complete safetensors file (what a scales checkpoint is). */
function complete(path: string): boolean {
  try {
    readSafetensors(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes the temporary files of dead processes; a complete temporary scales checkpoint with no
 * complete checkpoint beside it is renamed into place. Returns what was recovered, for the log.
 */
function recover(dir: string): string[] {
  const notes: string[] = [];
  const target = join(dir, SCALES_FILE);
  for (const name of readdirSync(dir).sort().filter((n) => staleTempOf(n) === SCALES_FILE)) {
    if (!(existsSync(target) && complete(target)) && complete(join(dir, name))) {
      renameSync(join(dir, name), target);
      notes.push(`recovered ${SCALES_FILE} from ${name}, which a stopped run left complete`);
    }
  }
  return [...notes, ...removeStaleTemps(dir).map((name) => `removed ${name}, left by a stopped run`)];
}

export interface RunDir {
  /** What was cleaned up or recovered. */
  notes: string[];
  release(): void;
}

/** Opens a run directory for a new run (`resume` false) or to continue one. */
export function openRunDir(dir: string, resume: boolean): RunDir {
  ensureDir(dir);
  const release = lock(dir);
  try {
    const notes = recover(dir);
    if (resume && !existsSync(join(dir, SCALES_FILE))) {
      throw new QzoError(`${dir}: no ${SCALES_FILE} to resume from; drop --resume to start a new run`, 2);
    }
    const left = RUN_FILES.filter((f) => existsSync(join(dir, f)));
    if (!resume && left.length) {
      throw new QzoError(`${dir}: already holds a run (${left.join(", ")}); pass --resume to continue it, or choose another --out`, 2);
    }
    return { notes, release };
  } catch (e) {
    release();
    throw e;
  }
}
