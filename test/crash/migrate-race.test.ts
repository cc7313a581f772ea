/**
 * Concurrent first start: an MCP client that starts one `baton mcp` per agent starts them all at
 * once on a fresh data dir. Every one must come up (migrations under one write lock, version
 * re-read inside it; WAL setup retried on busy) and the schema must be applied exactly once.
 * Several rounds, each on a fresh dir, since a race shows up only in some starts.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { sql } from '../../src/store/sql.js';
import { SqliteDb } from '../../src/store/sqlite.js';
import { stdioAgent, tempDir, type Agent } from '../helpers.js';

const ROUNDS = 5;
const AGENTS = 10;

describe('concurrent first start', () => {
  it(`${AGENTS} baton mcp processes started together on a fresh data dir all start, ${ROUNDS} rounds`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const tmp = tempDir('baton-migrate-race-');
      const data = join(tmp.dir, 'data');
      const started = await Promise.allSettled(
        Array.from({ length: AGENTS }, (_, i) => stdioAgent('v2', data, { BATON_AGENT: `a${i + 1}` })),
      );
      const agents = started.filter((s): s is PromiseFulfilledResult<Agent> => s.status === 'fulfilled').map((s) => s.value);
      try {
        const failures = started
          .map((s, i) => (s.status === 'rejected' ? `a${i + 1}: ${String((s.reason as Error).message ?? s.reason)}` : null))
          .filter((f) => f !== null);
        expect(failures, `round ${round}`).toEqual([]);
        const lists = await Promise.all(agents.map((a) => a.tools()));
        for (const tools of lists) expect(tools.map((t) => t.name)).toContain('task_claim');
        // Each agent can use the store it found.
        const answers = await Promise.all(agents.map((a) => a.call('task_list', {})));
        expect(answers.map((r) => r.isError)).toEqual(Array.from({ length: AGENTS }, () => false));
      } finally {
        await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
      }
      const db = new SqliteDb(join(data, 'baton.db'));
      try {
        const versions = await db.read((ex) => ex.all<{ version: number }>(sql`SELECT version FROM schema_migrations ORDER BY version`));
        expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
        const admins = await db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM tokens WHERE server_admin = 1`));
        expect(admins?.n).toBe(1);
      } finally {
        await db.close();
        tmp.cleanup();
      }
    }
  }, 300_000);
});
