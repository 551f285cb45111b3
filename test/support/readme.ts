/** README.md's sections, as the README tests read them. */
import { readFileSync } from "node:fs";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

/** The text of the section `## TITLE` (a test failure when there is none). */
export function readmeSection(title: string): string {
  const s = readme.split(/^## /m).find((x) => x.startsWith(`${title}\n`));
  if (!s) throw new Error(`README.md has no section '## ${title}'`);
  return s;
}

/** The indented command lines of a section that start with `prefix`, comments after `#` dropped. */
export function readmeCommands(title: string, prefix: RegExp): string[] {
  return readmeSection(title)
    .split("\n")
    .filter((l) => /^ {4}\S/.test(l))
    .map((l) => l.trim().replace(/\s+#.*$/, ""))
    .filter((l) => prefix.test(l));
}
