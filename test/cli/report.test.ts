/**
 * Pictures of a run: every `qzo train` leaves loss.svg beside log.jsonl, and `qzo report RUN` writes
 * a self-contained page that a browser renders: headless Chromium (Debian's `chromium` package,
 * which .ci/run installs) takes a screenshot, and the picture must hold the chart's curves (the
 * eval loss's orange, the training loss's blue) on a white page, not a blank or broken one.
 * Without Chromium the rendering test is skipped with a note, unless QZO_REQUIRE_CHROMIUM is set.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { decodePng } from "../support/png.js";

const root = new URL("../../", import.meta.url).pathname;
const Q4 = join(root, "models/weights/stories260K/stories260K-q4_0.gguf");
const qzo = (...args: string[]) => execa("node", [`${root}dist/src/cli/qzo.js`, ...args], { reject: false, cwd: root });
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => existsSync(p));
if (!CHROMIUM && process.env["QZO_REQUIRE_CHROMIUM"]) throw new Error("QZO_REQUIRE_CHROMIUM is set but no Chromium is installed (apt-get install chromium)");
if (!CHROMIUM) console.warn("report.test.ts: no Chromium found (apt-get install chromium): the rendering test is skipped");

/** One 40-step run that both tests read (trained once). */
let trained: Promise<string> | undefined;
const trainedRun = (): Promise<string> => (trained ??= train());

async function train(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "qzo-report-"));
  const data = join(dir, "stories.txt");
  writeFileSync(data, Array.from({ length: 24 }, (_, i) => `Once upon a time, story ${i}: a little girl named Lily played in the park with her dog.`).join("\n\n") + "\n");
  const run = join(dir, "run");
  const r = await qzo("train", "--model", Q4, "--data", data, "--out", run, "--steps", "40", "--batch", "4", "--seq-len", "32", "--eval-every", "10", "--reference", "f32=3.5");
  expect(r.exitCode, r.stderr).toBe(0);
  return run;
}

describe("pictures of a run", () => {
  it("qzo train writes loss.svg: a chart of the training and eval losses with its reference lines", async () => {
    const run = await trainedRun();
    const svg = readFileSync(join(run, "loss.svg"), "utf8");
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).not.toMatch(/<script|href=/);
    expect(svg).toContain("eval loss");
    expect(svg).toContain("f32 3.5000");
    expect(svg).toMatch(/before training \d\.\d{4}/);
    // Five evaluations (steps 0, 10, 20, 30, 40) are five points.
    expect(svg.match(/<circle /g)).toHaveLength(5);
    const report = await qzo("report", run);
    expect(report.exitCode, report.stderr).toBe(0);
    const html = readFileSync(join(run, "report.html"), "utf8");
    expect(html).toMatch(/<h1>QZO run: stories260K-q4_0\.gguf: lm, 40 steps<\/h1>/);
    expect(html).toContain("<th>best eval loss</th>");
    expect(html).not.toMatch(/<script|<link|src=/);
  }, 60_000);

  it.skipIf(!CHROMIUM)("qzo report writes a page that headless Chromium renders with the chart's curves", async () => {
    const run = await trainedRun();
    const page = join(run, "page.html");
    expect((await qzo("report", run, "--out", page)).exitCode).toBe(0);
    const png = join(run, "page.png");
    const r = await execa(CHROMIUM!, ["--headless", "--no-sandbox", "--disable-gpu", `--screenshot=${png}`, "--window-size=1100,900", `file://${page}`], { reject: false, timeout: 60_000 });
    expect(existsSync(png), r.stderr).toBe(true);
    const img = decodePng(readFileSync(png));
    expect([img.width, img.height]).toEqual([1100, 900]);
    let white = 0;
    let orange = 0;
    let blue = 0;
    for (let i = 0; i < img.width * img.height; i++) {
      const [rr, g, b] = [img.rgba[4 * i]!, img.rgba[4 * i + 1]!, img.rgba[4 * i + 2]!];
      if (rr > 245 && g > 245 && b > 245) white++;
      if (rr > 190 && g > 60 && g < 110 && b < 60) orange++; // #d2531d, the eval loss
      if (rr < 60 && g > 70 && g < 120 && b > 140) blue++; // #1f5fa8, the training loss average
    }
    const n = img.width * img.height;
    expect(white / n).toBeGreaterThan(0.5);
    expect(white / n).toBeLessThan(0.99);
    expect(orange).toBeGreaterThan(100);
    expect(blue).toBeGreaterThan(100);
  }, 120_000);

  it("qzo report on a directory that is not a run, or whose run.json is damaged, is one line and exit code 1", async () => {
    const dir = mkdtempSync(join(tmpdir(), "qzo-report-bad-"));
    const empty = await qzo("report", dir);
    expect(empty.exitCode).toBe(1);
    expect(empty.stderr).toBe(`qzo: ${dir}: not a run directory (expected run.json and log.jsonl)`);
    writeFileSync(join(dir, "run.json"), "{ torn");
    writeFileSync(join(dir, "log.jsonl"), "");
    const torn = await qzo("report", dir);
    expect(torn.exitCode).toBe(1);
    expect(torn.stderr).toBe(`qzo: ${join(dir, "run.json")}: not valid JSON`);
  });
});
