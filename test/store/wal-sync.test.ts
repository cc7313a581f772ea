/**
 * `durability: full-threaded` (issue 7): SQLite runs synchronous=NORMAL and the store fsyncs the WAL off
 * the event loop (store/wal-sync.ts). Acknowledged must still mean on disk: no write is answered,
 * and no read answers with what it saw, before an fdatasync of the WAL that began after the commit
 * has finished; a failed fsync is a storage fault, not an acknowledgement. fdatasync is held here
 * by hand, so each test fails if an answer gets out early.
 */
import type * as Fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

const syncs = vi.hoisted(() => ({ held: [] as ((err: NodeJS.ErrnoException | null) => void)[], hold: false, fail: false }));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof Fs>();
  const fdatasync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void => {
    if (syncs.fail) {
      setImmediate(() => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })));
      return;
    }
    if (syncs.hold) syncs.held.push((err) => fs.fdatasync(fd, (e) => cb(err ?? e)));
    else fs.fdatasync(fd, cb);
  };
  return { ...fs, default: { ...fs, fdatasync }, fdatasync };
});

const { sql } = await import('../../src/store/sql.js');
const { SqliteDb } = await import('../../src/store/sqlite.js');
const { BatonError } = await import('../../src/core/errors.js');
const { tempDir } = await import('../helpers.js');
const { RawDb } = await import('../raw-db.js');

/** Lets every pending callback and immediate run (a store batch starts on setImmediate). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

describe('durable commits with the fsync off the event loop', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: InstanceType<typeof SqliteDb>;

  beforeEach(async () => {
    syncs.held.length = 0;
    syncs.hold = false;
    syncs.fail = false;
    tmp = tempDir('baton-walsync-');
    db = new SqliteDb(join(tmp.dir, 'baton.db'), { durability: 'full-threaded' });
    await db.write((ex) => ex.run(sql`CREATE TABLE t (x INTEGER PRIMARY KEY)`));
  });
  afterEach(async () => {
    syncs.hold = false;
    syncs.fail = false;
    for (const release of syncs.held.splice(0)) release(null);
    await db.close().catch(() => undefined);
    tmp.cleanup();
  });

  it('answers a write only after the fsync that covers its commit, and lets the event loop run meanwhile', async () => {
    syncs.hold = true;
    let answered = false;
    const w = db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (1)`)).then(() => (answered = true));
    await settle();
    // Committed (the loop is free: this test keeps running), not yet on disk: not answered.
    expect(syncs.held).toHaveLength(1);
    expect(answered).toBe(false);
    syncs.held.shift()!(null);
    await w;
    expect(answered).toBe(true);
  });

  it('holds a read that saw an unsynced commit until that commit is on disk', async () => {
    syncs.hold = true;
    const w = db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (2)`));
    await settle();
    let seen: number[] | null = null;
    const r = db.read((ex) => ex.all<{ x: number }>(sql`SELECT x FROM t`)).then((rows) => (seen = rows.map((o) => o.x)));
    await settle();
    expect(seen).toBeNull();
    syncs.held.shift()!(null);
    await Promise.all([w, r]);
    expect(seen).toEqual([2]);
    // Nothing pending: a read answers without waiting for any fsync.
    await expect(db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM t`))).resolves.toEqual({ n: 1 });
  });

  it("holds a read that saw another connection's unsynced commit until its own fsync of the WAL finishes", async () => {
    const other = new SqliteDb(join(tmp.dir, 'baton.db'), { durability: 'full-threaded' });
    try {
      await other.read((ex) => ex.get(sql`SELECT 1`)); // its first-answer sync, before holding
      syncs.hold = true;
      const w = other.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (8)`));
      await settle();
      expect(syncs.held).toHaveLength(1); // the other connection's commit: visible, not on disk
      let seen: number[] | null = null;
      const r = db.read((ex) => ex.all<{ x: number }>(sql`SELECT x FROM t`)).then((rows) => (seen = rows.map((o) => o.x)));
      await settle();
      expect(seen).toBeNull();
      expect(syncs.held).toHaveLength(2); // this connection syncs the WAL itself
      syncs.held.pop()!(null);
      await r;
      expect(seen).toEqual([8]);
      syncs.held.shift()!(null);
      await w;
    } finally {
      syncs.hold = false;
      await other.close();
    }
  });

  it('commits landing during an fsync share the next one (one fsync at a time)', async () => {
    syncs.hold = true;
    const first = db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (3)`));
    await settle();
    const later = [4, 5, 6].map((x) => db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (${x})`)));
    await settle();
    expect(syncs.held).toHaveLength(1); // the second waits for the first to finish
    syncs.held.shift()!(null);
    await first;
    await settle();
    expect(syncs.held).toHaveLength(1); // one fsync for the three commits behind it
    syncs.held.shift()!(null);
    await Promise.all(later);
  });

  it('while an fsync runs, a smaller batch waits for it, and starts early once as many writes as the last batch are queued', async () => {
    const raw = new RawDb(join(tmp.dir, 'baton.db'));
    try {
      const committed = (): number[] => (raw.prepare('SELECT x FROM t ORDER BY x').all() as { x: number }[]).map((o) => o.x);
      const insert = (x: number): Promise<unknown> => db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (${x})`));
      syncs.hold = true;
      const first = [10, 11, 12].map(insert); // one batch of three
      await settle();
      expect(committed()).toEqual([10, 11, 12]); // committed, its fsync held
      // Fewer than three queued: held while the fsync runs (their answers would wait for the next fsync anyway).
      const held = [insert(13)];
      await settle();
      held.push(insert(14));
      await settle();
      expect(committed()).toEqual([10, 11, 12]);
      // The third makes a batch as large as the last: it starts without waiting for the fsync.
      held.push(insert(15));
      await settle();
      expect(committed()).toEqual([10, 11, 12, 13, 14, 15]);
      expect(syncs.held).toHaveLength(1);
      syncs.held.shift()!(null);
      await Promise.all(first);
      await settle();
      syncs.held.shift()!(null); // one fsync for the three behind it
      await Promise.all(held);
      // A smaller batch that never fills up starts when the fsync in flight finishes.
      const big = [20, 21, 22, 23].map(insert);
      await settle();
      const small = insert(24);
      await settle();
      expect(committed()).not.toContain(24);
      syncs.held.shift()!(null);
      await Promise.all(big);
      await settle();
      expect(committed()).toContain(24);
      syncs.held.shift()!(null);
      await small;
    } finally {
      raw.close();
    }
  });

  it('a failed fsync refuses the write as a storage fault instead of acknowledging it', async () => {
    syncs.fail = true;
    const err = await db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (7)`)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BatonError);
    expect((err as InstanceType<typeof BatonError>).code).toBe('storage_readonly');
    // Final: the failed commit is in the WAL and visible, the disk may have dropped it, and a
    // later fsync can succeed without having written it. Nothing is acknowledged any more.
    syncs.fail = false;
    await expect(db.write((ex) => ex.run(sql`INSERT INTO t (x) VALUES (8)`))).rejects.toMatchObject({ code: 'storage_readonly' });
    await expect(db.read((ex) => ex.all(sql`SELECT x FROM t`))).rejects.toMatchObject({ code: 'storage_readonly' });
    expect(db.fault()).toMatchObject({ code: 'storage_readonly' });
  });
});

describe('what each durability setting asks of SQLite', () => {
  it.each([
    [undefined, 2, 'the default: FULL, the fsync inside COMMIT'],
    ['full', 2, 'FULL'],
    ['full-threaded', 1, 'NORMAL, the fsync ours (WalSync)'],
    ['normal', 1, 'NORMAL, no fsync per commit'],
  ] as const)('durability %s → synchronous = %i (%s)', async (durability, level, _why) => {
    const tmp = tempDir();
    const db = new SqliteDb(join(tmp.dir, 'baton.db'), durability === undefined ? {} : { durability });
    try {
      const row = await db.read((ex) => ex.get<{ synchronous: number }>(sql`PRAGMA synchronous`));
      expect(row?.synchronous).toBe(level);
    } finally {
      await db.close();
      tmp.cleanup();
    }
  });
});
