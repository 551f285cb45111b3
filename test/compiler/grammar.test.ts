import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { grammarRuleNames } from "../../src/compiler/syntax/parser.js";

const ebnf = readFileSync(new URL("../../grammar/qzo.ebnf", import.meta.url), "utf8");

describe("grammar/qzo.ebnf", () => {
  it("has one production per parser rule, and no other", () => {
    const withoutComments = ebnf.replace(/\(\*[\s\S]*?\*\)/g, "");
    const productions = [...withoutComments.matchAll(/^([A-Za-z]+)\s*=/gm)].map((m) => m[1]);
    expect([...productions].sort()).toEqual(grammarRuleNames().sort());
  });
});
