import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    // Two test files at a time (the default leaves one core idle on a 2-core machine): most files
    // wait on compilers and child processes.
    maxWorkers: 2,
  },
});
