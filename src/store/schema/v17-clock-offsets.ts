import type { Migration } from '../db.js';

/**
 * The wall clock's offset from this machine's monotonic clock, per boot (issue 7, clock steps).
 * Leases are wall time; a process that sees the wall clock step moves live leases with it. A
 * process that started after the step (a CLI call, a new `baton mcp`) had no earlier reading of
 * its own and expired every live lease as if the step had been time. The monotonic clock is
 * shared by every process of one boot, so the offset (wall − monotonic) last seen is kept here:
 * any process compares its own with it and moves leases by the difference, in the same
 * transaction that records the new offset. SQLite only (one machine); PostgreSQL instances on
 * several machines share no monotonic clock and use their own reading (core/clock-step.ts).
 */
export const V17_CLOCK_OFFSETS: Migration = {
  version: 17,
  name: 'the wall clock offset last seen, per boot',
  sqlite: `
CREATE TABLE clock_offsets (
  boot TEXT PRIMARY KEY,
  offset_ms INTEGER NOT NULL
) WITHOUT ROWID;
`,
  postgres: `
CREATE TABLE clock_offsets (
  boot TEXT PRIMARY KEY,
  offset_ms BIGINT NOT NULL
);
`,
};
