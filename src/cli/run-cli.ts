/**
 * Process-level error handling shared by the `qzoc` and `qzo` commands: a
 * user error prints one line (or a compiler's diagnostics) and exits 1, a
 * usage error exits 2, and nothing ever prints a stack trace.
 */
import { CommanderError, type Command } from "commander";
import { CompileError, renderDiagnostic } from "../compiler/diagnostics.js";
import { QzoError } from "../util/errors.js";

export interface CliErrorOptions {
  /** The name errors are printed under (default: the program's name). */
  label?: string;
  /** Errors this process does not print (another process of the same job prints them). */
  quiet?: (e: unknown) => boolean;
}

export async function runCli(program: Command, argv: string[], opts: CliErrorOptions = {}): Promise<void> {
  // Output piped into `head` and closed early is not an error.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
  // Subcommands do not inherit these: every command reports usage errors the same way.
  for (const c of [program, ...program.commands]) {
    c.exitOverride();
    c.configureOutput({ outputError: (text, write) => write(text.trimEnd() + "\n") });
  }
  try {
    await program.parseAsync(argv);
  } catch (e) {
    process.exitCode = opts.quiet?.(e) && e instanceof QzoError ? e.exitCode : exitCodeFor(e, opts.label ?? program.name());
  }
}

function exitCodeFor(e: unknown, name: string): number {
  if (e instanceof CommanderError) {
    // commander has already printed the message; help and version exit 0.
    return e.exitCode === 0 ? 0 : 2;
  }
  if (e instanceof CompileError) {
    for (const d of e.diagnostics) process.stderr.write(renderDiagnostic(d) + "\n");
    const n = e.diagnostics.length;
    process.stderr.write(`${n} error${n === 1 ? "" : "s"}\n`);
    return 1;
  }
  if (e instanceof QzoError) {
    process.stderr.write(`${name}: ${oneLine(e.message)}\n`);
    return e.exitCode;
  }
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`${name}: internal error: ${oneLine(msg.split("\n")[0]!)} (please report this)\n`);
  return 1;
}

/** A message as one line: control characters (from file names or file contents) shown escaped. */
export function oneLine(message: string): string {
  return message.replace(/[\x00-\x1f\x7f\u2028\u2029]/g, (ch) => JSON.stringify(ch).slice(1, -1));
}

/** Parses repeated `--set key=value` options into config overrides. */
export function collectSet(value: string, prev: Record<string, string>): Record<string, string> {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(value);
  if (!m) throw new QzoError(`--set takes key=value, found '${value}'`, 2);
  return { ...prev, [m[1]!]: m[2]! };
}
