/**
 * User-facing errors. Anything thrown as a QzoError reaches the user as one line
 * (its message) and the process exits with `exitCode`: 1 for bad input (a spec,
 * a model file, data), 2 for bad usage (flags, arguments). Any other exception is
 * a bug in qzo and is reported as such.
 */
export class QzoError extends Error {
  readonly exitCode: 1 | 2;

  constructor(message: string, exitCode: 1 | 2 = 1) {
    super(message);
    this.name = "QzoError";
    this.exitCode = exitCode;
  }
}

/** A bad-input error about a file at a byte offset: `file: at byte N: message`. */
export function fileError(file: string, offset: number | undefined, message: string): QzoError {
  const where = offset === undefined ? "" : ` at byte ${offset}:`;
  return new QzoError(`${file}:${where} ${message}`);
}

/**
 * A backend cannot run this model here (no compiler, no native addon, a kernel or format it has no
 * code for), though the input is fine: `--device auto` falls back to the next backend on this
 * error only; every other error is the user's input and is reported as it is.
 */
export class UnsupportedError extends QzoError {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedError";
  }
}
