import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { MAX_DOCUMENT_BYTES, MAX_LINE_BYTES, batchOrder, datasetSize, epochPermutation, loadDataset, makeBatch, type ClassifyDataset, type LmDataset } from "../../src/runtime/data/dataset.js";
import { loadTokenizer } from "../../src/runtime/tokenizer/index.js";
import { QzoError } from "../../src/util/errors.js";

const here = dirname(fileURLToPath(import.meta.url));
const FIX = resolve(here, "../fixtures/data");
const MODELS = resolve(here, "../../../shared/models");
const tok = loadTokenizer(join(MODELS, "stories260K/tok512.bin"));
const BOS = tok.bos;

const tmp = mkdtempSync(join(tmpdir(), "qzo-data-"));
let nTmp = 0;
function file(content: string, ext = ".jsonl"): string {
  const p = join(tmp, `f${nTmp++}${ext}`);
  writeFileSync(p, content);
  return p;
}

function err(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(QzoError);
    const m = (e as Error).message;
    expect(m.includes("\n")).toBe(false);
    return m;
  }
  throw new Error("expected a QzoError");
}

const enc = (s: string) => tok.encode(s, { bos: true, eos: false });

describe("language-modelling data", () => {
  it("splits plain text at blank lines and cuts windows of at most seqLen tokens", () => {
    const path = join(FIX, "stories.txt");
    const docs = [
      "Once upon a time, there was a little girl named Lily.\nShe loved to play outside in the park.",
      "Tom had a big red ball. He liked to throw it very high, and his dog ran after it every time he did.",
      "The end.",
    ];
    for (const T of [2, 5, 16, 1000]) {
      const ds = loadDataset(path, tok, T) as LmDataset;
      expect(ds.kind).toBe("lm");
      const want: number[][] = [];
      for (const d of docs) {
        const ids = enc(d);
        expect(ids[0]).toBe(BOS);
        for (let s = 0; s < ids.length; s += T) if (ids.length - s >= 2) want.push(ids.slice(s, s + T));
      }
      expect(ds.windows.map((w) => [...w])).toEqual(want);
      for (const w of ds.windows) expect(w.length).toBeLessThanOrEqual(T);
      // Only each document's first window starts with BOS.
      expect(ds.windows.filter((w) => w[0] === BOS).length).toBe(3);
    }
  });

  it("drops a last window of a single token", () => {
    const ids = enc("The end.");
    const T = ids.length - 1; // the doc is T + 1 tokens: windows of T and 1
    const ds = loadDataset(file("The end.\n", ".txt"), tok, T) as LmDataset;
    expect(ds.windows.map((w) => [...w])).toEqual([ids.slice(0, T)]);
  });

  it("reads one document per line when there is no blank line", () => {
    const ds = loadDataset(join(FIX, "lines.txt"), tok, 64) as LmDataset;
    expect(ds.windows.map((w) => [...w])).toEqual(["Lily saw a cat.", "The cat was happy.", "Bob ran home."].map(enc));
  });

  it("reads {\"text\"} JSON lines, skipping blank lines and extra keys", () => {
    const ds = loadDataset(join(FIX, "lm.jsonl"), tok, 64) as LmDataset;
    expect(ds.windows.map((w) => [...w])).toEqual(["Once upon a time, there was a little girl named Lily.", "She loved to play outside."].map(enc));
    // By content: a .txt file of JSON objects is JSON lines too.
    const again = loadDataset(file('{"text": "The end."}\n', ".txt"), tok, 64) as LmDataset;
    expect(again.windows.map((w) => [...w])).toEqual([enc("The end.")]);
  });

  it("batches windows padded to the longest, with the mask on real tokens after the first", () => {
    const ds = loadDataset(join(FIX, "lines.txt"), tok, 64) as LmDataset;
    const lens = ds.windows.map((w) => w.length);
    const b = makeBatch(ds, [2, 0]);
    const T = Math.max(lens[2]!, lens[0]!);
    expect(b["tokens"]!.shape).toEqual([2, T]);
    expect(b["mask"]!.shape).toEqual([2, T]);
    expect(b["tokens"]!.data).toBeInstanceOf(Int32Array);
    expect(b["mask"]!.data).toBeInstanceOf(Float32Array);
    expect(b["label"]).toBeUndefined();
    const tokens = [...b["tokens"]!.data];
    const mask = [...b["mask"]!.data];
    [2, 0].forEach((i, r) => {
      const w = [...ds.windows[i]!];
      expect(tokens.slice(r * T, (r + 1) * T)).toEqual([...w, ...new Array(T - w.length).fill(0)]);
      expect(mask.slice(r * T, (r + 1) * T)).toEqual([0, ...new Array(w.length - 1).fill(1), ...new Array(T - w.length).fill(0)]);
    });
  });
});

describe("classification data", () => {
  it("builds prompt+candidate sequences with BOS and marks the answer tokens", () => {
    const ds = loadDataset(join(FIX, "classify.jsonl"), tok, 64) as ClassifyDataset;
    expect(ds.kind).toBe("classify");
    expect(datasetSize(ds)).toBe(3);
    const e0 = ds.examples[0]!;
    expect(e0.label).toBe(0);
    expect(e0.line).toBe(1);
    expect(e0.sequences.length).toBe(2);
    expect(e0.answerStart).toEqual([9, 9]); // <s> Lily was very happy . I t was | g re at
    const p = enc("Lily was very happy. It was");
    e0.sequences.forEach((s, k) => {
      const full = enc("Lily was very happy. It was" + [" great", " terrible"][k]);
      expect([...s]).toEqual(full);
      expect(s[0]).toBe(BOS);
      const a = e0.answerStart[k]!;
      expect(a).toBeGreaterThanOrEqual(1);
      expect(a).toBeLessThan(s.length);
      // The answer starts where the sequence leaves the prompt's own tokens.
      expect([...s.slice(0, a)]).toEqual(p.slice(0, a));
      expect(a === p.length || s[a] !== p[a]).toBe(true);
    });
    expect(ds.examples[2]!.sequences.length).toBe(3);
    expect(ds.examples[2]!.label).toBe(2);
  });

  it("lays out a batch as E*C rows, mask on candidate tokens only, label per example", () => {
    const ds = loadDataset(join(FIX, "classify.jsonl"), tok, 64) as ClassifyDataset;
    const b = makeBatch(ds, [1, 0]);
    const rows = [...ds.examples[1]!.sequences, ...ds.examples[0]!.sequences];
    const starts = [...ds.examples[1]!.answerStart, ...ds.examples[0]!.answerStart];
    const T = Math.max(...rows.map((r) => r.length));
    expect(b["tokens"]!.shape).toEqual([4, T]);
    expect(b["mask"]!.shape).toEqual([4, T]);
    expect(b["label"]!.shape).toEqual([2]);
    expect([...b["label"]!.data]).toEqual([1, 0]);
    expect(b["label"]!.data).toBeInstanceOf(Int32Array);
    rows.forEach((r, n) => {
      const tokens = [...b["tokens"]!.data.slice(n * T, (n + 1) * T)];
      const mask = [...b["mask"]!.data.slice(n * T, (n + 1) * T)];
      expect(tokens).toEqual([...r, ...new Array(T - r.length).fill(0)]);
      expect(mask).toEqual(tokens.map((_, t) => (t >= starts[n]! && t < r.length ? 1 : 0)));
      expect(mask.reduce((a, x) => a + x, 0)).toBeGreaterThan(0);
    });
  });

  it("rejects a batch whose examples have different numbers of candidates", () => {
    const ds = loadDataset(join(FIX, "classify.jsonl"), tok, 64);
    expect(err(() => makeBatch(ds, [0, 2]))).toBe(
      `${join(FIX, "classify.jsonl")}:3: this example has 3 candidates, but the one on line 1 in the same batch has 2: expected the same number in a batch`,
    );
  });

  it("truncates a long prompt from the left, keeping BOS and the whole answer", () => {
    const prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside. It was";
    const f = file(JSON.stringify({ prompt, candidates: [" great", " terrible"], label: 0 }) + "\n");
    const full = loadDataset(f, tok, 512) as ClassifyDataset;
    const cut = loadDataset(f, tok, 8) as ClassifyDataset;
    for (let k = 0; k < 2; k++) {
      const s = [...full.examples[0]!.sequences[k]!];
      const c = [...cut.examples[0]!.sequences[k]!];
      expect(c.length).toBe(8);
      expect(c[0]).toBe(BOS);
      expect(c.slice(1)).toEqual(s.slice(s.length - 7));
      const answer = s.length - full.examples[0]!.answerStart[k]!;
      expect(cut.examples[0]!.answerStart[k]).toBe(8 - answer);
    }
  });
});

describe("batch order", () => {
  it("is a deterministic shuffle per epoch, the same for the same seed and step", () => {
    const n = 10;
    const B = 4;
    const steps = Array.from({ length: 10 }, (_, s) => batchOrder(n, B, 42n, s));
    expect(steps.map((_, s) => batchOrder(n, B, 42n, s))).toEqual(steps);
    expect(batchOrder(n, B, 42, 3)).toEqual(steps[3]); // number seeds equal bigint seeds
    const stream = steps.flat();
    for (let e = 0; e < 4; e++) {
      const epoch = stream.slice(e * n, (e + 1) * n);
      expect([...epoch].sort((a, b) => a - b)).toEqual([...Array(n).keys()]);
      expect(epoch).toEqual([...epochPermutation(n, 42n, e)]);
    }
    expect(stream.slice(0, n)).not.toEqual(stream.slice(n, 2 * n));
    expect(batchOrder(n, B, 43n, 0)).not.toEqual(steps[0]);
    // A batch larger than the data set runs through several epochs.
    expect(batchOrder(3, 7, 1n, 0).length).toBe(7);
    // Known values: pin the shuffle so that resumed runs keep their batches across versions.
    expect(batchOrder(10, 10, 0n, 0)).toEqual([1, 8, 6, 9, 0, 4, 3, 5, 2, 7]);
    expect(batchOrder(10, 4, 12345678901234567890n, 5)).toEqual([0, 8, 1, 4]);
  });

  it("rejects bad arguments", () => {
    expect(err(() => batchOrder(0, 4, 1n, 0))).toBe("batch order: 0 examples: expected at least 1");
    expect(err(() => batchOrder(5, 0, 1n, 0))).toBe("batch order: batch size 0: expected a positive integer");
    expect(err(() => batchOrder(5, 2, 1n, -1))).toBe("batch order: step -1: expected a non-negative integer");
    expect(err(() => batchOrder(5, 2, -1n, 0))).toBe("batch order: seed -1: expected an integer in [0, 2^64)");
    expect(err(() => batchOrder(5, 2, 1n << 64n, 0))).toBe("batch order: seed 18446744073709551616: expected an integer in [0, 2^64)");
  });
});

describe("data errors", () => {
  const cases: [string, string, string][] = [
    ["empty file", "", `empty file: expected text documents or JSON lines ({"text": ...} or {"prompt", "candidates", "label"})`],
    ["blank file", "\n  \n\n", `empty file: expected text documents or JSON lines ({"text": ...} or {"prompt", "candidates", "label"})`],
    ["bad JSON", `{"text": "a"}\n{"text": "b"\n`, `:2: bad JSON, column 13: expected one JSON object per line`],
    ["not an object", `[1, 2]\n`, `:1: expected a JSON object ({"text": ...} or {"prompt", "candidates", "label"}), found an array`],
    ["no known key", `{"txt": "a"}\n`, `:1: missing field: expected "text" (language modelling) or "prompt", "candidates", "label" (classification)`],
    ["text not a string", `{"text": 3}\n`, `:1: field "text" is a number: expected a string`],
    ["mixed kinds", `{"text": "a b"}\n\n{"prompt": "x", "candidates": ["a", "b"], "label": 0}\n`, `:3: mixed kinds: this is a "prompt" (classification) line, but line 1 is a "text" line; expected one kind per file`],
    ["missing prompt", `{"candidates": ["a", "b"], "label": 0}\n`, `:1: field "prompt" is missing: expected a string`],
    ["missing candidates", `{"prompt": "x", "label": 0}\n`, `:1: field "candidates" is missing: expected an array of at least 2 strings`],
    ["one candidate", `{"prompt": "x", "candidates": ["a"], "label": 0}\n`, `:1: field "candidates" has 1 entry: expected at least 2 strings`],
    ["candidate not a string", `{"prompt": "x", "candidates": ["a", 7], "label": 0}\n`, `:1: candidates[1] is a number: expected a string`],
    ["empty candidate", `{"prompt": "x", "candidates": ["a", ""], "label": 0}\n`, `:1: candidates[1] is empty: expected some text`],
    ["missing label", `{"prompt": "x", "candidates": ["a", "b"]}\n`, `:1: field "label" is missing: expected an integer candidate index`],
    ["fractional label", `{"prompt": "x", "candidates": ["a", "b"], "label": 0.5}\n`, `:1: field "label" is 0.5: expected an integer candidate index`],
    ["label out of range", `{"prompt": "x", "candidates": ["a", "b"], "label": 2}\n`, `:1: label 2 is out of range: expected 0..1 (2 candidates)`],
    ["negative label", `{"prompt": "x", "candidates": ["a", "b"], "label": -1}\n`, `:1: label -1 is out of range: expected 0..1 (2 candidates)`],
  ];
  for (const [name, content, msg] of cases) {
    it(name, () => {
      const f = file(content);
      expect(err(() => loadDataset(f, tok, 32))).toBe(`${f}${msg.startsWith(":") ? "" : ": "}${msg}`);
    });
  }

  it("an answer too long for the sequence length", () => {
    const f = file(`{"prompt": "x", "candidates": [" a", " the little girl named Lily loved to play"], "label": 0}\n`);
    expect(err(() => loadDataset(f, tok, 4))).toMatch(new RegExp(`^${f}:1: candidates\\[1\\] has \\d+ tokens: with the prompt it needs more than the sequence length 4$`));
  });

  it("text with no window of two tokens", () => {
    const f = file(`{"text": ""}\n`);
    expect(err(() => loadDataset(f, tok, 32))).toBe(`${f}: no document gives a window of at least 2 tokens (BOS and one more): expected some non-empty text`);
  });

  it("a missing file, a directory, bad UTF-8, a bad sequence length", () => {
    expect(err(() => loadDataset(join(tmp, "nope.txt"), tok, 32))).toBe(`${join(tmp, "nope.txt")}: file not found`);
    expect(err(() => loadDataset(tmp, tok, 32))).toBe(`${tmp}: is a directory, expected a data file`);
    const bad = join(tmp, "bad.txt");
    writeFileSync(bad, Buffer.from([0x61, 0x0a, 0x61, 0xff, 0x62]));
    expect(err(() => loadDataset(bad, tok, 32))).toBe(`${bad}:2: not valid UTF-8: expected a UTF-8 text or JSON lines file`);
    expect(err(() => loadDataset(join(FIX, "lines.txt"), tok, 1))).toBe(`${join(FIX, "lines.txt")}: sequence length 1: expected an integer of at least 2`);
  });

  it("a line over 1 MiB, and a document over 1 MiB, are refused before they are tokenized", () => {
    const long = join(tmp, "long.txt");
    writeFileSync(long, "Once upon a time.\n" + "a".repeat(MAX_LINE_BYTES + 1) + "\nThe end.\n");
    expect(err(() => loadDataset(long, tok, 32))).toBe(`${long}:2: a line longer than ${MAX_LINE_BYTES} bytes: expected text lines of at most 1 MiB (one document per line or blank-line separated paragraphs)`);
    const doc = join(tmp, "doc.txt");
    const para = Array.from({ length: 40 }, () => "word ".repeat(6000)).join("\n");
    writeFileSync(doc, `Short story.\n\n${para}\n`);
    expect(err(() => loadDataset(doc, tok, 32))).toMatch(new RegExp(`^${doc}:3: a document \\(lines 3 to \\d+\\) longer than ${MAX_DOCUMENT_BYTES} bytes`));
    const ok = join(tmp, "crlf.txt");
    writeFileSync(ok, "\ufeffOnce upon a time.\r\nThe end.\r\n");
    expect(loadDataset(ok, tok, 32).kind).toBe("lm");
  });

  it("bad batch indices", () => {
    const ds = loadDataset(join(FIX, "lines.txt"), tok, 64);
    expect(err(() => makeBatch(ds, []))).toBe(`${join(FIX, "lines.txt")}: an empty batch: expected at least one example index`);
    expect(err(() => makeBatch(ds, [3]))).toBe(`${join(FIX, "lines.txt")}: example index 3 is out of range: expected 0..2`);
  });
});
