// A child process for test/runtime/memory-plan.test.ts: builds a random-weight Llama (config from
// argv), opens its CPU kernel backend with one thread, runs the perturbed lm loss once at B x T,
// resets the kernel's peak-RSS counter (/proc/self/clear_refs), runs it again, and prints the
// rise of the peak over the RSS before the call, with qzo plan's terms for the same call.
import { readFileSync, writeFileSync } from "node:fs";

const [root, overJson, shapeJson] = process.argv.slice(2);
const { compileModule } = await import(`${root}/dist/src/compiler/check.js`);
const { randomModel, lmBatch } = await import(`${root}/dist/src/runtime/bench/random-model.js`);
const { createKernelBackend } = await import(`${root}/dist/src/runtime/backends/kernel-backend.js`);
const { planMemory } = await import(`${root}/dist/src/runtime/plan/memory-plan.js`);
const over = JSON.parse(overJson);
const [B, T] = JSON.parse(shapeJson);
const m = compileModule(`${root}/models/llama.qzo`, over);
const backend = createKernelBackend(randomModel(m, 1, { fanIn: true }), "cpu", { loss: "lm", train: true, threads: 1 });
const status = (key) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
const batch = lmBatch(2, B, T, over.vocab);
const perturb = { seedLo: 1, seedHi: 2, eps: 1e-3, epsMode: "absolute", dist: "gaussian", sign: 1 };
backend.loss(batch, perturb);
writeFileSync("/proc/self/clear_refs", "5");
const before = status("VmRSS");
backend.loss(batch, perturb);
const measured = status("VmHWM") - before;
const plan = planMemory(m, "cpu", "qzo step", { batch: B, seq: T, threads: 1 });
process.stdout.write(JSON.stringify({ measured, terms: Object.fromEntries(plan.terms.map((t) => [t.name, t.bytes])) }) + "\n");
