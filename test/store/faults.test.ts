/**
 * The SQLite store under faults, through the Db contract on real files: group commit keeps one
 * failing op from failing its neighbours, a full disk answers storage_full and recovers, a
 * damaged page answers storage_corrupt without taking the process down, and a file that cannot
 * be written answers storage_readonly.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BatonError } from '../../src/core/errors.js';
import type { StoreFault } from '../../src/store/db.js';
import { sql } from '../../src/store/sql.js';
import { SqliteDb, type SqliteOptions } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers.js';
import { damageRootPage } from './damage.js';

async function refusal(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a refusal');
}

function code(err: unknown): string | undefined {
  return err instanceof BatonError ? err.code : (err as { code?: string }).code;
}

describe('SqliteDb under faults', () => {
  let tmp: ReturnType<typeof tempDir>;
  let file: string;
  let db: SqliteDb | null = null;
  const faults: StoreFault[] = [];

  const open = async (options: SqliteOptions = {}): Promise<SqliteDb> => {
    db = new SqliteDb(file, { onFault: (_err, f) => faults.push(f), ...options });
    return db;
  };

  beforeEach(async () => {
    tmp = tempDir('baton-faults-');
    file = join(tmp.dir, 'baton.db');
    faults.length = 0;
    const d = await open();
    await d.write(async (ex) => {
      await ex.run(sql`CREATE TABLE t (x INTEGER PRIMARY KEY, body BLOB)`);
      await ex.run(sql`CREATE TABLE u (y INTEGER PRIMARY KEY, note TEXT)`);
    });
  });
  afterEach(async () => {
    await db?.close().catch(() => undefined);
    db = null;
    tmp.cleanup();
  });

  const xs = (d: SqliteDb) => d.read((ex) => ex.all<{ x: number }>(sql`SELECT x FROM t ORDER BY x`)).then((r) => r.map((o) => o.x));

  it('group commit: an op that writes and then throws is rolled back alone; the others of its batch commit', async () => {
    const d = db!;
    const oops = new Error('op failed after writing');
    // Queued in the same tick: one batch, one transaction.
    const a = d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${1})`));
    const b = d.write(async (ex) => {
      await ex.run(sql`INSERT INTO t (x) VALUES (${2})`);
      await ex.run(sql`UPDATE t SET body = ${'b'} WHERE x = ${1}`);
      throw oops;
    });
    const c = d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${3})`));
    expect(await a).toEqual({ changes: 1 });
    expect(await refusal(b)).toBe(oops);
    expect(await c).toEqual({ changes: 1 });
    expect(await xs(d)).toEqual([1, 3]);
    const one = await d.read((ex) => ex.get<{ body: unknown }>(sql`SELECT body FROM t WHERE x = ${1}`));
    expect(one?.body).toBeNull();
    expect(d.fault()).toBeNull();
  });

  it('a lone write that writes and then throws leaves nothing behind', async () => {
    const d = db!;
    await expect(
      d.write(async (ex) => {
        await ex.run(sql`INSERT INTO t (x) VALUES (${7})`);
        await ex.run(sql`INSERT INTO u (y, note) VALUES (${7}, ${'seven'})`);
        throw new Error('late failure');
      }),
    ).rejects.toThrow('late failure');
    expect(await xs(d)).toEqual([]);
    expect(await d.read((ex) => ex.all(sql`SELECT * FROM u`))).toEqual([]);
  });

  it('disk full (max_page_count): the write that does not fit answers storage_full, its neighbours commit, reads work, writes recover', async () => {
    await db!.close();
    const d = await open({ maxPageCount: 40 });
    // Fill most of the cap with rows that can be deleted later.
    for (let i = 0; i < 6; i++) await d.write(async (ex) => ex.run(sql`INSERT INTO t (x, body) VALUES (${100 + i}, ${Buffer.alloc(16_000, i)})`));
    const small = (y: number) => d.write(async (ex) => ex.run(sql`INSERT INTO u (y, note) VALUES (${y}, ${'fits'})`));
    // One batch: a write before, a write that does not fit (SQLite ends the whole transaction
    // for it, undoing the first one too), a write after.
    const before = small(1);
    const big = d.write(async (ex) => ex.run(sql`INSERT INTO t (x, body) VALUES (${1}, ${Buffer.alloc(400_000, 7)})`));
    const after = small(2);
    const results = await Promise.allSettled([before, big, after]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (results[1] as PromiseRejectedResult).reason as BatonError;
    expect(err).toBeInstanceOf(BatonError);
    expect(err.code).toBe('storage_full');
    expect(err.message).toBe("the hub's disk is full; retry later");
    expect(err.details).toEqual({ retry_after_s: 30 });
    expect(d.fault()?.code).toBe('storage_full');
    expect(faults.map((f) => f.code)).toContain('storage_full');
    // Reads still work, and see exactly the committed rows.
    expect(await d.read((ex) => ex.all<{ y: number }>(sql`SELECT y FROM u ORDER BY y`))).toEqual([{ y: 1 }, { y: 2 }]);
    expect(await xs(d)).toEqual([100, 101, 102, 103, 104, 105]);
    // A lone write that does not fit: same answer, fault still in force.
    expect(code(await refusal(d.write(async (ex) => ex.run(sql`INSERT INTO t (x, body) VALUES (${2}, ${Buffer.alloc(400_000)})`))))).toBe(
      'storage_full',
    );
    expect(d.fault()?.code).toBe('storage_full');
    // The operator hears of a persisting fault once (then every 10 s), not once per refused write.
    expect(faults.filter((f) => f.code === 'storage_full')).toHaveLength(1);
    // Space returns (rows deleted, their pages free for reuse): writes go through and the fault clears.
    await d.write(async (ex) => ex.run(sql`DELETE FROM t WHERE x >= ${100}`));
    expect(d.fault()).toBeNull();
    await d.write(async (ex) => ex.run(sql`INSERT INTO t (x, body) VALUES (${3}, ${Buffer.alloc(40_000)})`));
    expect(await xs(d)).toEqual([3]);
  });

  it('a damaged page: reads of that table answer storage_corrupt, other tables still read, quick_check reports it', async () => {
    const d = db!;
    for (let i = 0; i < 50; i++) await d.write(async (ex) => ex.run(sql`INSERT INTO t (x, body) VALUES (${i}, ${Buffer.alloc(500, i)})`));
    await d.write(async (ex) => ex.run(sql`INSERT INTO u (y, note) VALUES (${1}, ${'intact'})`));
    await d.close();
    db = null;
    damageRootPage(file, 't');

    const again = await open();
    const err = await refusal(again.read((ex) => ex.all(sql`SELECT x, body FROM t`)));
    expect(err).toBeInstanceOf(BatonError);
    expect((err as BatonError).code).toBe('storage_corrupt');
    expect((err as BatonError).message).toMatch(/^the hub's database is damaged/);
    // Again (no crash, the connection is still usable), and a write that meets the page too.
    expect(code(await refusal(again.read((ex) => ex.all(sql`SELECT count(*) FROM t`))))).toBe('storage_corrupt');
    expect(code(await refusal(again.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${999})`))))).toBe('storage_corrupt');
    expect(again.fault()?.code).toBe('storage_corrupt');
    expect(await again.read((ex) => ex.all(sql`SELECT y, note FROM u`))).toEqual([{ y: 1, note: 'intact' }]);
    const report = await again.checkIntegrity(false);
    expect(report.ok).toBe(false);
    expect(report.problems.length).toBeGreaterThan(0);
    expect(again.lastIntegrity()).toEqual(report);
    // Writes to the intact table still commit, but damage does not mend: the fault stays in force
    // (readyz) until the hub is restarted after a repair.
    await again.write(async (ex) => ex.run(sql`INSERT INTO u (y, note) VALUES (${2}, ${'after'})`));
    expect(again.fault()?.code).toBe('storage_corrupt');
  });

  it.runIf(isRoot())('a file that cannot be written (chattr +i) answers storage_readonly, reads work, writes recover', async () => {
    const d = db!;
    await d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${1})`));
    const files = [file, `${file}-wal`];
    chattr('+i', files);
    try {
      const a = d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${2})`));
      const b = d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${3})`));
      const [ra, rb] = await Promise.allSettled([a, b]);
      expect(code((ra as PromiseRejectedResult).reason)).toBe('storage_readonly');
      expect(code((rb as PromiseRejectedResult).reason)).toBe('storage_readonly');
      expect(d.fault()?.code).toBe('storage_readonly');
      expect(await xs(d)).toEqual([1]);
    } finally {
      chattr('-i', files);
    }
    await d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${4})`));
    expect(d.fault()).toBeNull();
    expect(await xs(d)).toEqual([1, 4]);
  });

  it('COMMIT that fails: every caller is settled and the ones that can commit alone do', async () => {
    const d = db!;
    // A deferred foreign key fails at COMMIT, not at its statement: the batch's COMMIT fails,
    // and each caller is retried alone, so only the violating one is refused.
    await d.write(async (ex) => {
      await ex.run(sql`CREATE TABLE parent (id INTEGER PRIMARY KEY)`);
      await ex.run(sql`CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)`);
    });
    const ok1 = d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${1})`));
    const bad = d.write(async (ex) => ex.run(sql`INSERT INTO child (id, p) VALUES (${1}, ${42})`));
    const ok2 = d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${2})`));
    const results = await Promise.allSettled([ok1, bad, ok2]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(code((results[1] as PromiseRejectedResult).reason)).toBe('SQLITE_CONSTRAINT_FOREIGNKEY');
    expect(await xs(d)).toEqual([1, 2]);
    expect(await d.read((ex) => ex.all(sql`SELECT * FROM child`))).toEqual([]);
    // Alone in its batch: refused once, and the connection takes the next write.
    expect(code(await refusal(d.write(async (ex) => ex.run(sql`INSERT INTO child (id, p) VALUES (${2}, ${43})`))))).toBe(
      'SQLITE_CONSTRAINT_FOREIGNKEY',
    );
    await d.write(async (ex) => ex.run(sql`INSERT INTO t (x) VALUES (${3})`));
    expect(await xs(d)).toEqual([1, 2, 3]);
  });
});

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function chattr(flag: string, files: string[]): void {
  execFileSync('chattr', [flag, ...files]);
}
