import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The e2e suites start many processes; on a 2-core machine two files at a time is the sweet spot.
    maxWorkers: 2,
  },
});
