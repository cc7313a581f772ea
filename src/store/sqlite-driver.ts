import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { ConfigError } from '../config.js';

/**
 * The SQLite driver seam: Node's built-in `node:sqlite` (DatabaseSync; no native build, nothing
 * to download at install) or better-sqlite3 (a native addon, kept for Node 20, which has no
 * node:sqlite). Both are synchronous, so SqliteDb's batching, mutex and fault handling are the
 * same over either; this file hides the differences:
 *
 * - errors: better-sqlite3 throws `code: 'SQLITE_BUSY'`; node:sqlite throws
 *   `code: 'ERR_SQLITE_ERROR'` with the numeric extended result code in `errcode`. node:sqlite
 *   errors get `code` rewritten to the SQLite name (SQLITE_BUSY_RECOVERY, SQLITE_IOERR_SHORT_READ…)
 *   so faults.ts and isBusy() read one shape;
 * - `inTransaction` (node: `isTransaction`), `pragma`, `pluck`, `close`.
 *
 * Same on both (checked, see test/store/driver.test.ts): a JS number binds as REAL (an INTEGER
 * column's affinity stores an integral one as INTEGER); rows come back as plain objects of
 * numbers/strings/null (node:sqlite's have a null prototype). Different, on purpose kept: an
 * integer beyond 2^53 reads as a rounded number on better-sqlite3 and throws ERR_OUT_OF_RANGE on
 * node:sqlite; Baton stores no such integers (ids are text, times are ms, counters are small).
 *
 * Choice, once per process: `BATON_SQLITE_DRIVER=node|better-sqlite3` forces one (a clear
 * ConfigError when it cannot be loaded); unset, node:sqlite when it is usable, else better-sqlite3.
 */

export type SqliteDriverName = 'node' | 'better-sqlite3';

export const SQLITE_DRIVERS: readonly SqliteDriverName[] = ['node', 'better-sqlite3'];

export type Row = Record<string, unknown>;

/** Parameters are positional (`?`), passed as one array: no spread per call on the hot path. */
export interface SqliteStatement {
  run(params?: readonly unknown[]): { changes: number };
  get(params?: readonly unknown[]): Row | undefined;
  all(params?: readonly unknown[]): Row[];
  /** The first column of the first row (undefined when there is no row). */
  value(params?: readonly unknown[]): unknown;
  /** The first column of every row. */
  column(params?: readonly unknown[]): unknown[];
}

export interface SqliteConnection {
  readonly driver: SqliteDriverName;
  /** A transaction is open (SQLite may end one itself on SQLITE_FULL, IOERR or CORRUPT). */
  readonly inTransaction: boolean;
  prepare(text: string): SqliteStatement;
  /** Runs a fixed script (one or more statements, no parameters). */
  exec(text: string): void;
  /** `PRAGMA <text>`: the first column of its first row, if it returns one. */
  pragma(text: string): unknown;
  close(): void;
}

export interface OpenOptions {
  readonly?: boolean;
  /** Which driver; defaults to the process's choice (sqliteDriver()). */
  driver?: SqliteDriverName;
}

// ---------------------------------------------------------------------------------------------
// SQLite result codes (sqlite3.h): node:sqlite reports the number, faults.ts reads the name.

const PRIMARY: Record<number, string> = {
  1: 'ERROR', 2: 'INTERNAL', 3: 'PERM', 4: 'ABORT', 5: 'BUSY', 6: 'LOCKED', 7: 'NOMEM', 8: 'READONLY',
  9: 'INTERRUPT', 10: 'IOERR', 11: 'CORRUPT', 12: 'NOTFOUND', 13: 'FULL', 14: 'CANTOPEN', 15: 'PROTOCOL',
  16: 'EMPTY', 17: 'SCHEMA', 18: 'TOOBIG', 19: 'CONSTRAINT', 20: 'MISMATCH', 21: 'MISUSE', 22: 'NOLFS',
  23: 'AUTH', 24: 'FORMAT', 25: 'RANGE', 26: 'NOTADB', 27: 'NOTICE', 28: 'WARNING', 100: 'ROW', 101: 'DONE',
};

/** Extended codes: primary | (n << 8), listed per primary code from n = 1. */
const EXTENDED: Record<number, readonly (string | null)[]> = {
  1: ['MISSING_COLLSEQ', 'RETRY', 'SNAPSHOT', 'RESERVESIZE', 'KEY', 'UNABLE'],
  4: [null, 'ROLLBACK'],
  5: ['RECOVERY', 'SNAPSHOT', 'TIMEOUT'],
  6: ['SHAREDCACHE', 'VTAB'],
  8: ['RECOVERY', 'CANTLOCK', 'ROLLBACK', 'DBMOVED', 'CANTINIT', 'DIRECTORY'],
  10: [
    'READ', 'SHORT_READ', 'WRITE', 'FSYNC', 'DIR_FSYNC', 'TRUNCATE', 'FSTAT', 'UNLOCK', 'RDLOCK', 'DELETE',
    'BLOCKED', 'NOMEM', 'ACCESS', 'CHECKRESERVEDLOCK', 'LOCK', 'CLOSE', 'DIR_CLOSE', 'SHMOPEN', 'SHMSIZE',
    'SHMLOCK', 'SHMMAP', 'SEEK', 'DELETE_NOENT', 'MMAP', 'GETTEMPPATH', 'CONVPATH', 'VNODE', 'AUTH',
    'BEGIN_ATOMIC', 'COMMIT_ATOMIC', 'ROLLBACK_ATOMIC', 'DATA', 'CORRUPTFS', 'IN_PAGE',
  ],
  11: ['VTAB', 'SEQUENCE', 'INDEX'],
  14: ['NOTEMPDIR', 'ISDIR', 'FULLPATH', 'CONVPATH', 'DIRTYWAL', 'SYMLINK'],
  19: [
    'CHECK', 'COMMITHOOK', 'FOREIGNKEY', 'FUNCTION', 'NOTNULL', 'PRIMARYKEY', 'TRIGGER', 'UNIQUE', 'VTAB',
    'ROWID', 'PINNED', 'DATATYPE',
  ],
  23: ['USER'],
  27: ['RECOVER_WAL', 'RECOVER_ROLLBACK', 'RBU'],
  28: ['AUTOINDEX'],
};

/** `SQLITE_BUSY_RECOVERY` for 261, as better-sqlite3 names it; null for a number SQLite does not define. */
export function sqliteCodeName(errcode: number): string | null {
  if (!Number.isInteger(errcode) || errcode <= 0) return null;
  const primary = PRIMARY[errcode & 0xff];
  if (primary === undefined) return null;
  const n = errcode >> 8;
  if (n === 0) return `SQLITE_${primary}`;
  const ext = EXTENDED[errcode & 0xff]?.[n - 1];
  // An extended code newer than this table still says its primary code, which is what faults.ts needs.
  return ext === undefined || ext === null ? `SQLITE_${primary}` : `SQLITE_${primary}_${ext}`;
}

/** node:sqlite's error, given the SQLite name in `code` (the same object: its message and stack stay). */
function normalized(error: unknown): unknown {
  const e = error as { code?: unknown; errcode?: unknown } | null;
  if (e !== null && typeof e === 'object' && e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number') {
    const name = sqliteCodeName(e.errcode);
    if (name !== null) e.code = name;
  }
  return error;
}

// ---------------------------------------------------------------------------------------------
// Loading and choosing.

/** The subset of node:sqlite used here (@types/node 20 does not describe it). */
interface NodeStatement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): Row | undefined;
  all(...params: unknown[]): Row[];
}
interface NodeDatabase {
  readonly isTransaction: boolean;
  prepare(text: string): NodeStatement;
  exec(text: string): void;
  close(): void;
}
interface NodeSqlite {
  DatabaseSync: new (file: string, options?: { readOnly?: boolean }) => NodeDatabase;
}

const require = createRequire(import.meta.url);

type Loaded<T> = { ok: true; mod: T } | { ok: false; why: string };
let nodeLoaded: Loaded<NodeSqlite> | undefined;
let betterLoaded: Loaded<typeof BetterSqlite3> | undefined;

/** The loader's reason on one line (the ABI mismatch says which versions on its second line). */
function reason(error: unknown): string {
  return String((error as Error | null)?.message ?? error).replace(/\s+/g, ' ').trim().slice(0, 300);
}

function loadNode(): Loaded<NodeSqlite> {
  if (nodeLoaded !== undefined) return nodeLoaded;
  // Node 22 prints "ExperimentalWarning: SQLite is an experimental feature" on first load: noise
  // on every CLI call and stdio server's stderr for a module Baton has chosen deliberately.
  const emit = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (/SQLite is an experimental feature/.test(text)) return;
    (emit as (...a: unknown[]) => void).call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    const mod = require('node:sqlite') as NodeSqlite;
    // `isTransaction` arrived in 22.16 / 24.0; without it a transaction SQLite ended on its own
    // (SQLITE_FULL) could not be told from an open one.
    const probe = new mod.DatabaseSync(':memory:');
    const usable = typeof probe.isTransaction === 'boolean';
    probe.close();
    nodeLoaded = usable
      ? { ok: true, mod }
      : { ok: false, why: `node:sqlite on Node ${process.version} lacks isTransaction (needs Node >= 22.16)` };
  } catch (error) {
    nodeLoaded = { ok: false, why: `node:sqlite is not available on Node ${process.version} (needs Node >= 22.16): ${reason(error)}` };
  } finally {
    process.emitWarning = emit;
  }
  return nodeLoaded;
}

function loadBetter(): Loaded<typeof BetterSqlite3> {
  if (betterLoaded !== undefined) return betterLoaded;
  try {
    const mod = require('better-sqlite3') as typeof BetterSqlite3;
    // The JS loads lazily; the native addon loads at the first open. Open one now so a missing or
    // wrongly built addon is found at the choice, not at the first query.
    new mod(':memory:').close();
    betterLoaded = { ok: true, mod };
  } catch (error) {
    betterLoaded = {
      ok: false,
      why: `better-sqlite3 cannot be loaded (not installed, or built for another Node version): ${reason(error)}`,
    };
  }
  return betterLoaded;
}

/** Whether `name` can be used in this process (for tests and doctor). */
export function driverAvailable(name: SqliteDriverName): boolean {
  return (name === 'node' ? loadNode() : loadBetter()).ok;
}

let chosen: { env: string | undefined; name: SqliteDriverName } | undefined;

/**
 * The driver this process uses: BATON_SQLITE_DRIVER when set (a ConfigError when it names no
 * driver or one that cannot be loaded), else node:sqlite when usable, else better-sqlite3.
 */
export function sqliteDriver(env: NodeJS.ProcessEnv = process.env): SqliteDriverName {
  const wanted = env.BATON_SQLITE_DRIVER === undefined || env.BATON_SQLITE_DRIVER === '' ? undefined : env.BATON_SQLITE_DRIVER;
  if (chosen !== undefined && chosen.env === wanted) return chosen.name;
  let name: SqliteDriverName;
  if (wanted !== undefined) {
    if (!(SQLITE_DRIVERS as readonly string[]).includes(wanted)) {
      throw new ConfigError(`BATON_SQLITE_DRIVER must be one of ${SQLITE_DRIVERS.join(', ')} (got ${JSON.stringify(wanted.slice(0, 40))})`);
    }
    name = wanted as SqliteDriverName;
    const loaded = name === 'node' ? loadNode() : loadBetter();
    if (!loaded.ok) throw new ConfigError(`BATON_SQLITE_DRIVER=${name}, but ${loaded.why}`);
  } else if (loadNode().ok) {
    name = 'node';
  } else if (loadBetter().ok) {
    name = 'better-sqlite3';
  } else {
    throw new ConfigError(
      `no SQLite driver: ${(loadNode() as { why: string }).why}, and ${(loadBetter() as { why: string }).why}. ` +
        'Use Node >= 22.16, or install better-sqlite3 for this Node (npm install better-sqlite3, or npm rebuild better-sqlite3 after a Node upgrade; it needs its prebuilt binary or a C++ toolchain)',
    );
  }
  chosen = { env: wanted, name };
  return name;
}

// ---------------------------------------------------------------------------------------------
// The two implementations.

function firstValue(row: Row | undefined): unknown {
  if (row === undefined) return undefined;
  for (const k in row) return row[k];
  return undefined;
}

const NONE: readonly unknown[] = [];

class NodeStmt implements SqliteStatement {
  constructor(private readonly s: NodeStatement) {}
  run(params: readonly unknown[] = NONE): { changes: number } {
    try {
      return { changes: Number(this.s.run(...params).changes) };
    } catch (error) {
      throw normalized(error);
    }
  }
  get(params: readonly unknown[] = NONE): Row | undefined {
    try {
      return this.s.get(...params);
    } catch (error) {
      throw normalized(error);
    }
  }
  all(params: readonly unknown[] = NONE): Row[] {
    try {
      return this.s.all(...params);
    } catch (error) {
      throw normalized(error);
    }
  }
  value(params: readonly unknown[] = NONE): unknown {
    return firstValue(this.get(params));
  }
  column(params: readonly unknown[] = NONE): unknown[] {
    return this.all(params).map(firstValue);
  }
}

class NodeConn implements SqliteConnection {
  readonly driver = 'node' as const;
  private closed = false;
  constructor(private readonly db: NodeDatabase) {}
  get inTransaction(): boolean {
    return this.db.isTransaction;
  }
  prepare(text: string): SqliteStatement {
    try {
      return new NodeStmt(this.db.prepare(text));
    } catch (error) {
      throw normalized(error);
    }
  }
  exec(text: string): void {
    try {
      this.db.exec(text);
    } catch (error) {
      throw normalized(error);
    }
  }
  pragma(text: string): unknown {
    return this.prepare(`PRAGMA ${text}`).value();
  }
  /** Idempotent, as better-sqlite3's is (node:sqlite throws "database is not open" on a second close). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

class BetterStmt implements SqliteStatement {
  constructor(private readonly s: BetterSqlite3.Statement) {}
  run(params: readonly unknown[] = NONE): { changes: number } {
    return { changes: this.s.run(...params).changes };
  }
  get(params: readonly unknown[] = NONE): Row | undefined {
    return this.s.get(...params) as Row | undefined;
  }
  all(params: readonly unknown[] = NONE): Row[] {
    return this.s.all(...params) as Row[];
  }
  value(params: readonly unknown[] = NONE): unknown {
    return firstValue(this.get(params));
  }
  column(params: readonly unknown[] = NONE): unknown[] {
    return this.all(params).map(firstValue);
  }
}

class BetterConn implements SqliteConnection {
  readonly driver = 'better-sqlite3' as const;
  constructor(private readonly db: BetterSqlite3.Database) {}
  get inTransaction(): boolean {
    return this.db.inTransaction;
  }
  prepare(text: string): SqliteStatement {
    return new BetterStmt(this.db.prepare(text));
  }
  exec(text: string): void {
    this.db.exec(text);
  }
  pragma(text: string): unknown {
    return this.db.pragma(text, { simple: true });
  }
  close(): void {
    this.db.close();
  }
}

/** better-sqlite3's default busy timeout (ms). */
const DEFAULT_BUSY_TIMEOUT_MS = 5000;

/** Opens `file` (or ':memory:') with the chosen driver. Errors carry SQLite's `code` on both. */
export function openSqlite(file: string, options: OpenOptions = {}): SqliteConnection {
  const name = options.driver ?? sqliteDriver();
  if (name === 'node') {
    const loaded = loadNode();
    if (!loaded.ok) throw new ConfigError(loaded.why);
    try {
      const conn = new NodeConn(new loaded.mod.DatabaseSync(file, { readOnly: options.readonly === true }));
      // better-sqlite3 opens with a 5 s busy timeout, node:sqlite with none: the same start on
      // both (SqliteDb sets its own).
      conn.pragma(`busy_timeout = ${DEFAULT_BUSY_TIMEOUT_MS}`);
      return conn;
    } catch (error) {
      throw normalized(error);
    }
  }
  const loaded = loadBetter();
  if (!loaded.ok) throw new ConfigError(loaded.why);
  return new BetterConn(new loaded.mod(file, options.readonly === true ? { readonly: true, fileMustExist: true } : undefined));
}
