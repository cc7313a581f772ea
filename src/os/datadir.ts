import type * as ChildProcess from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * child_process, loaded on first use: git runs only when walking up found no data dir, and
 * loading the module cost every `baton mcp` start ~1 ms (issue 11, docs/BENCHMARKS.md).
 */
const childProcess = (): typeof ChildProcess => process.getBuiltinModule('node:child_process');

/**
 * The data dir's files, checked before anything opens them, and watched while a hub runs.
 * Failing loudly here is the point: silently creating a fresh database or secrets file beside
 * a damaged or missing one issues a new admin key, breaks every existing key and the audit chain.
 */

export const DB_FILE = 'baton.db';
/** In a PostgreSQL hub's data dir: the mark that a hub was started from it (hub.ts markPostgresHub). */
export const STORE_MARKER = 'store.json';
export const DATA_DIR_NAME = '.baton';
const SQLITE_HEADER = Buffer.from('SQLite format 3\u0000', 'latin1');

/** The data dir or one of its files is unusable; the message says what happened and what to do. */
export class DataDirError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DataDirError';
  }
}

/**
 * The nearest `.baton` directory from `cwd` up to the filesystem root (like git's `.git`), and
 * every path looked at, nearest first.
 */
export function findDataDir(cwd: string): { found: string | null; tried: string[] } {
  const tried: string[] = [];
  for (let dir = cwd; ; ) {
    const candidate = join(dir, DATA_DIR_NAME);
    tried.push(candidate);
    try {
      if (statSync(candidate).isDirectory()) return { found: candidate, tried };
    } catch {
      // not here: look further up
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  // Git worktrees of one repository share one hub: a linked worktree (../feature, elsewhere on
  // disk) finds the data dir beside the repository's common git dir, i.e. in the main worktree.
  const shared = sharedDataDir(cwd);
  if (shared !== null && !tried.includes(shared)) {
    tried.push(shared);
    try {
      if (statSync(shared).isDirectory()) return { found: shared, tried };
    } catch {
      // none there either
    }
  }
  return { found: null, tried };
}

/**
 * The `.baton` of the main worktree of the git repository `cwd` is in: the parent of the common
 * git dir (`git rev-parse --git-common-dir`, the same for every worktree), when that dir is a
 * non-bare `.git`; null outside a repository or without git. git runs with an argument array
 * (no shell), only when walking up found nothing (one process start, about 2 ms).
 */
export function sharedDataDir(cwd: string): string | null {
  let out: string;
  try {
    out = childProcess().execFileSync('git', ['rev-parse', '--git-common-dir'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5_000,
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
    }).trim();
  } catch {
    return null;
  }
  if (out === '') return null;
  const common = resolve(cwd, out);
  return basename(common) === '.git' ? join(dirname(common), DATA_DIR_NAME) : null;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function errno(err: unknown): string {
  return (err as NodeJS.ErrnoException | null)?.code ?? 'error';
}

/**
 * Before a hub opens the data dir: the dir (when it exists) can be written, and an existing
 * `baton.db` is a SQLite database. Returns whether the database exists. A 0-byte file is
 * re-checked for a moment first: a hub starting beside this one has just created it (SQLite
 * writes the header right after, in the same start).
 */
export async function checkDataDir(dir: string): Promise<{ dbExists: boolean }> {
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return { dbExists: false };
    throw new DataDirError(`the data dir ${dir} cannot be read (${errno(err)}): check its permissions`);
  }
  if (!st.isDirectory()) throw new DataDirError(`the data dir ${dir} is not a directory: pass --data <dir> or set BATON_DATA to a directory`);
  checkWritable(dir);
  const file = join(dir, DB_FILE);
  if (!existsSync(file)) return { dbExists: false };
  for (let waited = 0; ; waited += 50) {
    const header = readHeader(file);
    if (header.length > 0) {
      if (header.length < SQLITE_HEADER.length || !header.subarray(0, SQLITE_HEADER.length).equals(SQLITE_HEADER)) {
        throw new DataDirError(
          `${file} is not a SQLite database (its first bytes are not "SQLite format 3"). ` +
            'It was overwritten or is not a Baton file: restore baton.db from a backup, or move the data dir aside to start a new hub.',
        );
      }
      return { dbExists: true };
    }
    if (waited >= 2_000) {
      throw new DataDirError(
        `${file} is empty (0 bytes): it was truncated, or a first start was interrupted. ` +
          'Restore baton.db from a backup; if this hub never held data, delete baton.db (and secrets.json) and start again. ' +
          'Baton does not re-initialise it by itself: that would issue a new admin key and break every existing key.',
      );
    }
    await sleep(50);
  }
}

function readHeader(file: string): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new DataDirError(`${file} cannot be read (${errno(err)}): check its owner and permissions`);
  }
  try {
    const buf = Buffer.alloc(SQLITE_HEADER.length);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** A create-and-delete probe: permission bits alone do not say (root, ACLs, read-only mounts). */
export function checkWritable(dir: string): void {
  const probe = join(dir, `.write-probe-${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    writeFileSync(probe, '', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    const code = errno(err);
    const why = code === 'EROFS' ? 'is on a read-only file system' : code === 'ENOSPC' ? 'is on a full disk' : `cannot be written (${code})`;
    // What to do depends on why: a mount option and a full disk are not fixed with chmod.
    const fix =
      code === 'EROFS'
        ? 'Remount it read-write, or pass --data <dir> on a writable disk.'
        : code === 'ENOSPC'
          ? 'Free space on that disk, or pass --data <dir> on another one.'
          : 'Fix its owner or permissions (it should belong to the user running baton, mode 0700), or pass --data <dir>.';
    throw new DataDirError(`the data dir ${dir} ${why}: the hub needs to write there (database, WAL, secrets). ${fix}`);
  }
  rmSync(probe, { force: true });
}

/**
 * Those of `paths` that exist and this process cannot write, with the errno. `access(W_OK)`, not
 * the mode bits: it also says so for root on an immutable file (EPERM) or a read-only mount (EROFS).
 */
export function unwritablePaths(paths: readonly string[]): { path: string; code: string }[] {
  const out: { path: string; code: string }[] = [];
  for (const path of paths) {
    if (!existsSync(path)) continue;
    try {
      accessSync(path, constants.W_OK);
    } catch (err) {
      out.push({ path, code: errno(err) });
    }
  }
  return out;
}

/** A SQLite database file and its WAL and shared-memory index. */
export function databaseFiles(file: string): string[] {
  return [file, `${file}-wal`, `${file}-shm`];
}

/**
 * The database and its WAL/SHM files (those present) that this user cannot write, each with what
 * to do: the hub would open them and refuse every write (storage_readonly).
 */
export function unwritableFiles(dir: string): string[] {
  return unwritablePaths(databaseFiles(join(dir, DB_FILE))).map(({ path, code }) => {
    const fix =
      code === 'EROFS'
        ? 'its file system is mounted read-only: remount it read-write, or move the data dir'
        : code === 'EPERM'
          ? 'it is marked immutable or append-only (`lsattr` shows it): clear that with `chattr -i -a`'
          : 'it should belong to the user running baton, mode 0600: fix its owner (chown) or mode (chmod 600)';
    return `${path} cannot be written (${code}): ${fix}. Until then the hub refuses every write (storage_readonly)`;
  });
}

interface Identity {
  dev: number;
  ino: number;
}

function identity(path: string): Identity | null {
  try {
    const st = statSync(path);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

export type DataDirState = { ok: true } | { ok: false; reason: 'removed' | 'replaced' };

/**
 * Compares the data dir, its database file and the database's WAL and shared-memory index with
 * what the hub opened. A hub whose dir was removed (or swapped for another) would otherwise keep
 * acknowledging writes into an unlinked file that nobody will ever read again; so would one whose
 * WAL was deleted (SQLite keeps writing into the unlinked WAL, and the commits in it are gone at
 * the next start); a deleted `-shm` leaves the next process with an index of its own beside this
 * one's. SQLite removes both only when the last connection closes, never under an open one.
 */
export class DataDirWatch {
  private readonly dirId: Identity | null;
  private readonly dbId: Identity | null;
  /** Taken when first seen (a store opens its WAL and index with its first transaction). */
  private readonly sideIds: [string, Identity | null][];
  private timer: NodeJS.Timeout | null = null;
  private lost: DataDirState | null = null;

  constructor(
    private readonly dir: string,
    private readonly onLost: (state: DataDirState & { ok: false }) => void,
  ) {
    this.dirId = identity(dir);
    this.dbId = identity(join(dir, DB_FILE));
    this.sideIds = databaseFiles(join(dir, DB_FILE))
      .slice(1)
      .map((path) => [path, identity(path)]);
  }

  /** Checks now (four stat calls). Once lost, stays lost: only a restart opens the new files. */
  check(): DataDirState {
    if (this.lost !== null) return this.lost;
    const same = (a: Identity | null, b: Identity | null): 'same' | 'removed' | 'replaced' =>
      b === null ? 'removed' : a === null || a.dev !== b.dev || a.ino !== b.ino ? 'replaced' : 'same';
    const d = same(this.dirId, identity(this.dir));
    let f = d === 'same' ? same(this.dbId, identity(join(this.dir, DB_FILE))) : d;
    for (const entry of this.sideIds) {
      if (f !== 'same') break;
      const now = identity(entry[0]);
      if (entry[1] === null) entry[1] = now;
      else f = same(entry[1], now);
    }
    if (f === 'same') return { ok: true };
    const state = { ok: false as const, reason: f };
    this.lost = state;
    this.onLost(state);
    return state;
  }

  /** Checks every `intervalMs` (timers run on the monotonic clock) until stopped. */
  start(intervalMs = 1_000): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
