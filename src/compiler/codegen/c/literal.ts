/**
 * The one way text and numbers of a spec (paths, names, source locations,
 * constants) enter generated C++ and CUDA. Nothing a user or a model file
 * controls is pasted into generated source except through these functions:
 * comments stay comments, string literals stay string literals, and numbers
 * are finite and in range or the generation fails with a located error.
 */
import { QzoError } from "../../../util/errors.js";

/**
 * Text safe inside a `//` or block comment AND inside a "..." literal: printable ASCII only (every
 * other character, a newline included, becomes '_'), no backslash (a line continuation), no
 * quote, no comment terminator, no trigraph.
 */
export function cCommentText(text: string): string {
  return text
    .replace(/[^\x20-\x7e]/g, "_")
    .replace(/\\/g, "/")
    .replace(/"/g, "'")
    .replace(/\*\//g, "* /")
    .replace(/\?\?/g, "? ?");
}

/**
 * A C/C++/CUDA string literal whose value is exactly `text` (as UTF-8 bytes). Printable ASCII other
 * than `"`, `\` and `?` is kept; every other byte is a three-digit octal escape (octal escapes end
 * after three digits, so no following character is swallowed, unlike `\x`).
 */
export function cStringLiteral(text: string): string {
  let out = '"';
  for (const byte of Buffer.from(text, "utf8")) {
    const printable = byte >= 0x20 && byte <= 0x7e && byte !== 0x22 && byte !== 0x5c && byte !== 0x3f;
    out += printable ? String.fromCharCode(byte) : `\\${byte.toString(8).padStart(3, "0")}`;
  }
  return out + '"';
}

/** An integer as a C int64 literal; `what` names the value in the error (e.g. "config entry 'dim'"). */
export function cInt(v: number, what: string): string {
  if (!Number.isSafeInteger(v)) throw new QzoError(`${what} is ${v}, not an integer between -2^53 and 2^53; it cannot be compiled`);
  return `${v}`;
}

/** A finite number as a C double literal (always with a '.' or an exponent). */
export function cDouble(v: number, what: string): string {
  if (!Number.isFinite(v)) throw new QzoError(`${what} is ${v}, not a finite number; it cannot be compiled`);
  const s = String(v);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** A finite number as a C float literal (`1.5f`). */
export function cFloat(v: number, what: string): string {
  return `${cDouble(v, what)}f`;
}

/** A name used as (part of) a C identifier: checked, never escaped. */
export function cIdentifier(name: string, what: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new QzoError(`${what} ${JSON.stringify(name)} is not an identifier; it cannot be compiled`);
  return name;
}
