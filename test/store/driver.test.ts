/**
 * The SQLite driver seam (src/store/sqlite-driver.ts): each available driver, through the same
 * interface, gives the same rows, the same transaction state and the same error codes, so the
 * fault mapping (faults.ts) and the busy retries work on both. Node 20 has no node:sqlite and
 * Node 24 cannot load a better-sqlite3 built for 20, so each run covers the driver its Node has
 * (CI runs both: README "Tests"); the unavailable one is reported as skipped, by name.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { faultCodeOf, isBusy } from '../../src/store/faults.js';
import { driverAvailable, openSqlite, sqliteCodeName, sqliteDriver, SQLITE_DRIVERS } from '../../src/store/sqlite-driver.js';
import { SqliteDb } from '../../src/store/sqlite.js';
import { sql } from '../../src/store/sql.js';
import { runBaton, tempDir } from '../helpers.js';

const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
/** isTransaction, which the node driver needs, arrived in Node 22.16 / 24.0. */
const nodeSqliteExpected = major > 22 || (major === 22 && minor >= 16);

function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return (error as { code?: unknown }).code;
  }
  throw new Error('expected a throw');
}

describe('driver choice', () => {
  it('uses node:sqlite wherever Node has it, better-sqlite3 only where it does not', () => {
    expect(driverAvailable('node')).toBe(nodeSqliteExpected);
    expect(sqliteDriver({})).toBe(nodeSqliteExpected ? 'node' : 'better-sqlite3');
    // The process's own choice (the suite runs with the default unless CI forces one).
    const forced = process.env.BATON_SQLITE_DRIVER;
    expect(sqliteDriver()).toBe(forced === undefined || forced === '' ? sqliteDriver({}) : forced);
  });

  it('BATON_SQLITE_DRIVER names a driver or the start stops with a clear error', () => {
    expect(() => sqliteDriver({ BATON_SQLITE_DRIVER: 'sqlite4' })).toThrow(ConfigError);
    expect(() => sqliteDriver({ BATON_SQLITE_DRIVER: 'sqlite4' })).toThrow(/BATON_SQLITE_DRIVER must be one of node, better-sqlite3/);
    for (const d of SQLITE_DRIVERS) {
      if (driverAvailable(d)) expect(sqliteDriver({ BATON_SQLITE_DRIVER: d })).toBe(d);
      else expect(() => sqliteDriver({ BATON_SQLITE_DRIVER: d })).toThrow(new RegExp(`^BATON_SQLITE_DRIVER=${d}, but `));
    }
  });

  it('the CLI says so and exits 2 for a driver that is not there', async () => {
    const missing = SQLITE_DRIVERS.find((d) => !driverAvailable(d));
    const dir = tempDir('baton-driver-cli-');
    try {
      const bogus = await runBaton(['init', '--data', join(dir.dir, 'data0')], { env: { BATON_SQLITE_DRIVER: 'bogus' } });
      expect(bogus.code).toBe(2);
      expect(bogus.stderr).toContain('BATON_SQLITE_DRIVER must be one of node, better-sqlite3');
      if (missing !== undefined) {
        const r = await runBaton(['init', '--data', join(dir.dir, 'data')], { env: { BATON_SQLITE_DRIVER: missing } });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`BATON_SQLITE_DRIVER=${missing}, but`);
      }
      const ok = await runBaton(['init', '--data', join(dir.dir, 'data2')], { env: { BATON_SQLITE_DRIVER: sqliteDriver({}) } });
      expect(ok.code).toBe(0);
      // doctor names the driver, and a missing one as such (not as an unreadable database).
      const doctor = await runBaton(['doctor', '--data', join(dir.dir, 'data2')]);
      expect(doctor.stdout).toContain(`${sqliteDriver({}) === 'node' ? 'node:sqlite' : 'better-sqlite3'} on Node ${process.version}`);
      if (missing !== undefined) {
        const bad = await runBaton(['doctor', '--data', join(dir.dir, 'data2')], { env: { BATON_SQLITE_DRIVER: missing } });
        expect(bad.stdout).toContain(`BATON_SQLITE_DRIVER=${missing}, but`);
        expect(bad.stdout).not.toContain('cannot be opened');
      }
    } finally {
      dir.cleanup();
    }
  });

  it('names SQLite result codes as better-sqlite3 does', () => {
    const cases: [number, string | null][] = [
      [5, 'SQLITE_BUSY'],
      [261, 'SQLITE_BUSY_RECOVERY'],
      [517, 'SQLITE_BUSY_SNAPSHOT'],
      [6, 'SQLITE_LOCKED'],
      [13, 'SQLITE_FULL'],
      [11, 'SQLITE_CORRUPT'],
      [779, 'SQLITE_CORRUPT_INDEX'],
      [26, 'SQLITE_NOTADB'],
      [8, 'SQLITE_READONLY'],
      [1032, 'SQLITE_READONLY_DBMOVED'],
      [266, 'SQLITE_IOERR_READ'],
      [522, 'SQLITE_IOERR_SHORT_READ'],
      [778, 'SQLITE_IOERR_WRITE'],
      [8458, 'SQLITE_IOERR_CORRUPTFS'],
      [14, 'SQLITE_CANTOPEN'],
      [2067, 'SQLITE_CONSTRAINT_UNIQUE'],
      [787, 'SQLITE_CONSTRAINT_FOREIGNKEY'],
      [1, 'SQLITE_ERROR'],
      // An extended code newer than the table still says its primary code.
      [13 | (60 << 8), 'SQLITE_FULL'],
      [0, null],
      [-1, null],
      [99, null],
      [1.5, null],
    ];
    for (const [n, name] of cases) expect([n, sqliteCodeName(n)]).toEqual([n, name]);
  });
});

for (const driver of SQLITE_DRIVERS) {
  const available = driverAvailable(driver);
  describe.skipIf(!available)(`driver ${driver}${available ? '' : ' (not available on this Node: skipped)'}`, () => {
    const withDir = (fn: (dir: string) => void | Promise<void>) => async () => {
      const d = tempDir('baton-driver-');
      try {
        await fn(d.dir);
      } finally {
        d.cleanup();
      }
    };
    const open = (file: string, readonly = false) => openSqlite(file, { driver, readonly });

    it('rows, parameters, pragma, transactions', withDir((dir) => {
      const c = open(join(dir, 'a.db'));
      expect(c.driver).toBe(driver);
      expect(c.pragma('journal_mode = WAL')).toBe('wal');
      c.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER, r REAL)');
      const ins = c.prepare('INSERT INTO t (name, n, r) VALUES (?, ?, ?)');
      expect(ins.run(['a', 1, 0.5])).toEqual({ changes: 1 });
      expect(ins.run(['b', null, 2])).toEqual({ changes: 1 });
      // A JS number binds as REAL on both; the INTEGER column's affinity stores an integral one as an integer.
      expect({ ...c.prepare('SELECT typeof(n) AS tn, typeof(r) AS tr FROM t WHERE id = 1').get() }).toEqual({ tn: 'integer', tr: 'real' });
      expect(c.prepare('SELECT name, n, r FROM t ORDER BY id').all().map((r) => ({ ...r }))).toEqual([
        { name: 'a', n: 1, r: 0.5 },
        { name: 'b', n: null, r: 2 },
      ]);
      expect(c.prepare('SELECT name FROM t WHERE id = ?').get([99])).toBeUndefined();
      expect(c.prepare('SELECT name FROM t ORDER BY id').column()).toEqual(['a', 'b']);
      expect(c.prepare('SELECT count(*) FROM t').value()).toBe(2);
      expect(c.prepare('UPDATE t SET n = n + 1').run()).toEqual({ changes: 2 });
      // 2^53 - 1 round-trips exactly on both.
      expect(c.prepare('SELECT ? + 0 AS v').value([Number.MAX_SAFE_INTEGER])).toBe(Number.MAX_SAFE_INTEGER);
      // Beyond 2^53 they differ (documented in sqlite-driver.ts; Baton stores no such integer):
      // better-sqlite3 rounds, node:sqlite refuses rather than answer a wrong number.
      const huge = c.prepare('SELECT 9007199254740993 AS v');
      if (driver === 'node') expect(codeOf(() => huge.value())).toBe('ERR_OUT_OF_RANGE');
      else expect(huge.value()).toBe(9007199254740992);
      expect(c.inTransaction).toBe(false);
      c.exec('BEGIN IMMEDIATE');
      expect(c.inTransaction).toBe(true);
      c.prepare('DELETE FROM t').run();
      c.exec('ROLLBACK');
      expect(c.inTransaction).toBe(false);
      expect(c.prepare('SELECT count(*) FROM t').value()).toBe(2);
      expect(codeOf(() => ins.run(['a', 1, 1]))).toBe('SQLITE_CONSTRAINT_UNIQUE');
      expect(codeOf(() => c.prepare('SELECT * FROM nope'))).toBe('SQLITE_ERROR');
      c.close();
      // Closing twice is harmless on both (Hub.close after a failed start closes the store again).
      c.close();
    }));

    it('busy: another connection holding the write lock is SQLITE_BUSY, which isBusy() and the store retry know', withDir((dir) => {
      const file = join(dir, 'b.db');
      const a = open(file);
      a.pragma('journal_mode = WAL');
      a.exec('CREATE TABLE t (x)');
      const b = open(file);
      b.pragma('busy_timeout = 0');
      a.exec('BEGIN IMMEDIATE');
      let error: unknown;
      try {
        b.exec('BEGIN IMMEDIATE');
      } catch (e) {
        error = e;
      }
      expect((error as { code?: unknown }).code).toBe('SQLITE_BUSY');
      expect(isBusy(error)).toBe(true);
      expect(faultCodeOf(error, dir)).toBeNull();
      expect(b.inTransaction).toBe(false);
      a.exec('COMMIT');
      b.exec('BEGIN IMMEDIATE');
      b.exec('COMMIT');
      a.close();
      b.close();
    }));

    it('faults: full, not a database, read-only map to the three storage faults', withDir((dir) => {
      const c = open(join(dir, 'f.db'));
      c.exec('CREATE TABLE t (x TEXT)');
      c.pragma(`max_page_count = ${c.pragma('page_count') as number}`);
      c.exec('BEGIN');
      let full: unknown;
      try {
        for (let i = 0; i < 1000; i++) c.prepare('INSERT INTO t VALUES (?)').run(['x'.repeat(1000)]);
      } catch (e) {
        full = e;
      }
      expect((full as { code?: unknown }).code).toBe('SQLITE_FULL');
      expect(faultCodeOf(full, dir)).toBe('storage_full');
      if (c.inTransaction) c.exec('ROLLBACK');
      c.close();

      const junk = join(dir, 'junk.db');
      writeFileSync(junk, Buffer.alloc(8192, 0x41));
      const j = open(junk);
      const notadb = (() => {
        try {
          j.prepare('SELECT * FROM sqlite_master').all();
        } catch (e) {
          return e;
        }
        return null;
      })();
      j.close();
      expect((notadb as { code?: unknown }).code).toBe('SQLITE_NOTADB');
      expect(faultCodeOf(notadb, dir)).toBe('storage_corrupt');

      const r = open(join(dir, 'f.db'), true);
      expect(r.prepare('SELECT count(*) FROM t').value()).toBe(0);
      const ro = (() => {
        try {
          r.prepare('INSERT INTO t VALUES (?)').run(['x']);
        } catch (e) {
          return e;
        }
        return null;
      })();
      r.close();
      expect((ro as { code?: unknown }).code).toBe('SQLITE_READONLY');
      expect(faultCodeOf(ro, dir)).toBe('storage_readonly');
    }));

    it('a missing file opened read-only is SQLITE_CANTOPEN, not a new empty database', withDir((dir) => {
      expect(codeOf(() => open(join(dir, 'none.db'), true))).toBe('SQLITE_CANTOPEN');
    }));

    it('SqliteDb runs on it: writes, reads, the data_version doorbell, integrity check', withDir(async (dir) => {
      const file = join(dir, 's.db');
      const db = new SqliteDb(file, { driver });
      const other = new SqliteDb(file, { driver });
      try {
        await db.write((ex) => ex.run(sql`CREATE TABLE t (x INTEGER)`));
        // Another connection's commit rings the cross-process doorbell (data_version, polled).
        let rang = 0;
        const stop = other.subscribe(() => rang++);
        await db.write((ex) => ex.run(sql`INSERT INTO t VALUES (${1}), (${2})`));
        for (let i = 0; i < 200 && rang === 0; i++) await new Promise((r) => setTimeout(r, 10));
        stop();
        expect(rang).toBeGreaterThan(0);
        expect(await other.read((ex) => ex.all<{ x: number }>(sql`SELECT x FROM t ORDER BY x`))).toEqual([{ x: 1 }, { x: 2 }]);
        expect(await other.write((ex) => ex.run(sql`DELETE FROM t WHERE x = ${1}`))).toEqual({ changes: 1 });
        expect((await db.checkIntegrity(true)).ok).toBe(true);
      } finally {
        await db.close();
        await other.close();
      }
    }));
  });
}
