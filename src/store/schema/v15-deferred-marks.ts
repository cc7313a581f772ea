import type { Migration } from '../db.js';

/**
 * Exactly-once deferred audit writes (ops/deferred.ts `WorkerSink`). A batch handed to the
 * deferred-audit worker carries a key; each of its per-chain writes inserts `<key>/<chain>` here
 * in the same transaction as its audit rows, and writes nothing when the mark is already there.
 * A batch whose worker died or was terminated after committing but before answering is handed
 * on (to a new worker, or the main connection) under the same key, and is not appended twice.
 *
 * Keys begin with their creation time in fixed-width base 36, so the worker removes marks older
 * than an hour with a range delete on the primary key (a batch is handed on within minutes).
 * PostgreSQL writes deferred rows inline (no worker) and leaves the table empty; it has it so
 * both schemas stay the same (backups restore into either).
 */
export const V15_DEFERRED_MARKS: Migration = {
  version: 15,
  name: 'deferred audit batch marks',
  sqlite: `
CREATE TABLE deferred_marks (
  key TEXT PRIMARY KEY
) WITHOUT ROWID;
`,
  postgres: `
CREATE TABLE deferred_marks (
  key TEXT PRIMARY KEY
);
`,
};
