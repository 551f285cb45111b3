import { describe, expect, it } from "vitest";
import { Sym } from "../../src/compiler/ir/symbolic.js";

const a = (n: string) => Sym.atom(n);

describe("symbolic dimensions", () => {
  it("puts sums and products in one canonical form", () => {
    expect(a("dim").mul(a("n_kv_heads")).toString()).toBe(a("n_kv_heads").mul(a("dim")).toString());
    expect(a("x").add(a("y")).sub(a("x")).toString()).toBe("y");
    expect(a("B").mul(Sym.int(2)).add(a("B")).toString()).toBe("3*B");
    expect(Sym.int(7).sub(Sym.int(7)).toString()).toBe("0");
  });

  it("divides shapes exactly, so head_dim * heads is dim again", () => {
    const headDim = a("dim").div(a("n_heads"));
    expect(headDim.toString()).toBe("dim/n_heads");
    expect(headDim.mul(a("n_heads")).equals(a("dim"))).toBe(true);
    expect(a("in").div(Sym.int(8)).toString()).toBe("in/8");
    expect(a("in").div(Sym.int(8)).mul(Sym.int(8)).toString()).toBe("in");
  });

  it("keeps floor division and remainder of layout indices opaque unless constant", () => {
    const i = a("i");
    expect(i.mod(Sym.int(16)).toString()).toBe("(i%16)");
    expect(i.floorDiv(Sym.int(16)).toString()).toBe("(i/16)");
    expect(Sym.int(37).floorDiv(Sym.int(16)).constant).toBe(2);
    expect(Sym.int(-3).mod(Sym.int(16)).constant).toBe(13);
    expect(i.mod(Sym.int(16)).scale(8).add(i.floorDiv(Sym.int(16)).scale(4)).add(Sym.int(16)).toString()).toBe("8*(i%16) + 4*(i/16) + 16");
  });

  it("substitutes values for atoms", () => {
    const e = a("n_kv_heads").mul(a("dim").div(a("n_heads")));
    const v = e.substitute((x) => Sym.int({ n_kv_heads: 4, dim: 64, n_heads: 8 }[x]!));
    expect(v.constant).toBe(32);
  });
});
