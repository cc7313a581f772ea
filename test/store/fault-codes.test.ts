/**
 * Which driver error is which storage fault, and what the client is told (src/store/faults.ts).
 * The I/O-error-on-a-full-disk case asks the real file system, so it runs on a small tmpfs
 * filled to the brim (root only).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { faultCodeOf, faultError, faultRecord } from '../../src/store/faults.js';
import type { StoreFault } from '../../src/store/db.js';
import { pgSchema, tempDir } from '../helpers.js';

const err = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('storage fault codes', () => {
  it('maps SQLite result codes to the three faults, and nothing else', () => {
    const dir = tempDir('baton-codes-');
    try {
      const cases: [string, string | null][] = [
        ['SQLITE_FULL', 'storage_full'],
        ['SQLITE_CORRUPT', 'storage_corrupt'],
        ['SQLITE_CORRUPT_INDEX', 'storage_corrupt'],
        ['SQLITE_NOTADB', 'storage_corrupt'],
        ['SQLITE_IOERR_SHORT_READ', 'storage_corrupt'],
        ['SQLITE_IOERR_READ', 'storage_corrupt'],
        ['SQLITE_READONLY', 'storage_readonly'],
        ['SQLITE_READONLY_DBMOVED', 'storage_readonly'],
        ['SQLITE_CANTOPEN', 'storage_readonly'],
        ['SQLITE_PERM', 'storage_readonly'],
        ['SQLITE_IOERR_WRITE', 'storage_readonly'],
        ['SQLITE_IOERR_FSYNC', 'storage_readonly'],
        ['SQLITE_BUSY', null],
        ['SQLITE_BUSY_SNAPSHOT', null],
        ['SQLITE_CONSTRAINT_UNIQUE', null],
        ['SQLITE_ERROR', null],
        ['ENOENT', null],
      ];
      for (const [code, fault] of cases) expect([code, faultCodeOf(err(code), dir.dir)]).toEqual([code, fault]);
      expect(faultCodeOf(new Error('no code'), dir.dir)).toBeNull();
      expect(faultCodeOf(null, dir.dir)).toBeNull();
    } finally {
      dir.cleanup();
    }
  });

  it('names the table when SQLite does, and only then', () => {
    const named = faultError('storage_corrupt', err('SQLITE_CORRUPT', 'malformed database schema (tasks)'));
    expect(named.message).toBe("the hub's database is damaged (table tasks); an operator must repair it");
    expect(named.details).toEqual({ table: 'tasks' });
    const generic = faultError('storage_corrupt', err('SQLITE_CORRUPT', 'database disk image is malformed'));
    expect(generic.message).toBe("the hub's database is damaged; an operator must repair it");
    expect(generic.details).toBeUndefined();
    expect(faultError('storage_full', err('SQLITE_FULL')).details).toEqual({ retry_after_s: 30 });
    expect(faultRecord('storage_full', err('SQLITE_FULL', 'database or disk is full'), 5)).toEqual({
      code: 'storage_full',
      message: 'SQLITE_FULL: database or disk is full',
      at: 5,
    });
  });

  it.runIf(process.getuid?.() === 0)('an I/O error on a disk with no space left is storage_full', () => {
    const tmp = tempDir('baton-codes-full-');
    const mnt = join(tmp.dir, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    } catch {
      tmp.cleanup();
      return; // no mount here (a container without the capability): the mapping above still holds
    }
    try {
      expect(faultCodeOf(err('SQLITE_IOERR_TRUNCATE'), mnt)).toBe('storage_readonly');
      expect(() => writeFileSync(join(mnt, 'fill'), Buffer.alloc(4 * 1024 * 1024))).toThrow();
      expect(faultCodeOf(err('SQLITE_IOERR_TRUNCATE'), mnt)).toBe('storage_full');
      expect(faultCodeOf(err('SQLITE_IOERR_WRITE'), mnt)).toBe('storage_full');
    } finally {
      execFileSync('umount', ['-l', mnt]);
      tmp.cleanup();
    }
  });
});

/**
 * PostgreSQL: a lost or refused connection is `storage_unreachable` to the operator (onFault: the
 * log), never `storage_readonly` (that one says an operator must fix the disk or permissions), and
 * it is not kept as the store's fault (readyz, doctor): it passes by itself. The client is told
 * `unavailable`.
 */
describe('PostgreSQL: a lost connection is storage_unreachable', () => {
  it('a connection the server ends mid-query, and a server that refuses connections', async () => {
    const { PostgresDb } = await import('../../src/store/postgres.js');
    const { sql } = await import('../../src/store/sql.js');
    const { default: pg } = await import('pg');
    const s = pgSchema();
    const faults: StoreFault[] = [];
    const db = await PostgresDb.open({ url: s.url, schema: s.schema, busyTimeoutMs: 0, onFault: (_e, f) => faults.push(f) });
    const admin = new pg.Client({ connectionString: s.url });
    await admin.connect();
    try {
      const slow = db.read((ex) => ex.get(sql`SELECT pg_sleep(5) AS slept`));
      const outcome = slow.then(() => null, (e: unknown) => e);
      // Ended by the server (an operator, a failover): the pool's backends of this schema, once the sleep runs.
      for (let i = 0; i < 100; i++) {
        const r = await admin.query({
          text: "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
          values: [`baton:${s.schema}`],
        });
        if ((r.rows[0] as { n: number }).n > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const e = await outcome;
      expect((e as { code?: string } | null)?.code).toBe('unavailable');
      expect(faults.map((f) => f.code)).toEqual(['storage_unreachable']);
      expect(faults[0]!.message).toMatch(/^connection: /);
      expect(db.fault()).toBeNull();
    } finally {
      await admin.end();
      await db.close();
      await s.drop();
    }
    // Nothing listens on port 1: refused at once.
    const refused: StoreFault[] = [];
    const e = await PostgresDb.open({ url: 'postgres://postgres@127.0.0.1:1/none', busyTimeoutMs: 0, onFault: (_e, f) => refused.push(f) }).then(
      () => null,
      (err: unknown) => err,
    );
    expect((e as { code?: string } | null)?.code).toBe('unavailable');
    expect(refused.map((f) => f.code)).toEqual(['storage_unreachable']);
  });
});
