import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The PostgreSQL suites' server: the local one, or a real one started from npm (pg-setup.ts).
    globalSetup: ['test/pg-setup.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The e2e suites start many processes; on a 2-core machine two files at a time is the sweet spot.
    maxWorkers: 2,
  },
});
