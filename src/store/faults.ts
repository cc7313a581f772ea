import { statfsSync } from 'node:fs';
import { BatonError, type ErrorCode } from '../core/errors.js';
import type { StoreFault, WriteFaultCode } from './db.js';

/**
 * Storage faults at the store boundary: a driver error that means the disk is full, the file is
 * damaged or the file cannot be written becomes a `BatonError` with a stable code, so every
 * surface answers it the same way (503) and the runner passes it through. Busy is not a fault
 * (another process holds the lock; the runner answers `unavailable`), and any other driver error
 * stays as it is (a bug: `internal`).
 */

/** What a client is told to wait before retrying a write on a full disk. */
const FULL_RETRY_AFTER_S = 30;

/** Below this much free space an I/O error is taken for a full disk (SQLite's write may have needed a page or two). */
export const NEARLY_FULL_BYTES = 1024 * 1024;

/** The faults a store refuses a write with (a lost connection is not one: the client gets `unavailable`). */
export type FaultCode = WriteFaultCode;

function sqliteCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

/**
 * The blocks this process may still write on a file system: root may use the blocks a file
 * system reserves (ext4: 5 %), so a hub run as root (a container's default) can write on
 * when `bavail` says none are left.
 */
export function writableBlocks(s: { bavail: number | bigint; bfree: number | bigint }): number {
  return Number(process.geteuid?.() === 0 ? s.bfree : s.bavail);
}

function freeBytes(dir: string | null): number | null {
  if (dir === null) return null;
  try {
    const s = statfsSync(dir);
    return writableBlocks(s) * Number(s.bsize);
  } catch {
    return null;
  }
}

/** Whether the disk holding `dir` has room beyond NEARLY_FULL_BYTES (true when it cannot be asked). */
export function hasRoom(dir: string | null): boolean {
  const free = freeBytes(dir);
  return free === null || free >= NEARLY_FULL_BYTES;
}

/** Which fault a driver error is, or null when it is none (busy, constraint, a bug). */
export function faultCodeOf(err: unknown, dir: string | null): FaultCode | null {
  const code = sqliteCode(err);
  if (code === null) return null;
  if (code === 'SQLITE_FULL') return 'storage_full';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return 'storage_corrupt';
  if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM') {
    return 'storage_readonly';
  }
  if (code.startsWith('SQLITE_IOERR')) {
    // SQLite reports ENOSPC on write() as SQLITE_FULL, but an ENOSPC from ftruncate, fallocate or
    // the shm file arrives as a plain I/O error; the driver does not pass errno on, so the disk
    // itself is asked.
    const free = freeBytes(dir);
    if (free !== null && free < NEARLY_FULL_BYTES) return 'storage_full';
    // A page that cannot be read is, for the client, a damaged store: the data is not there to
    // answer with, and retrying will not help until an operator looks.
    if (code === 'SQLITE_IOERR_READ' || code === 'SQLITE_IOERR_SHORT_READ' || code === 'SQLITE_IOERR_CORRUPTFS') {
      return 'storage_corrupt';
    }
    // Any other I/O error (write, fsync, truncate, lock, a removed file) means the hub cannot
    // durably write its database: the honest answer is that it takes no writes until an operator
    // fixes the disk, which is what storage_readonly tells a client. Not `unavailable`: that code
    // invites an immediate retry, and this fault does not pass by itself.
    return 'storage_readonly';
  }
  return null;
}

/** The table SQLite names in its message (`malformed database schema (x)`, `… in table x`), if any. */
function tableIn(message: string): string | null {
  const m = /malformed database schema \(([A-Za-z_][A-Za-z0-9_]*)\)/.exec(message) ?? /\btable "?([A-Za-z_][A-Za-z0-9_]*)"?/.exec(message);
  return m?.[1] ?? null;
}

export function faultError(code: FaultCode, err: unknown): BatonError {
  switch (code) {
    case 'storage_full':
      return storeFailure('fault', 'storage_full', "the hub's disk is full; retry later", { retry_after_s: FULL_RETRY_AFTER_S });
    case 'storage_corrupt': {
      const table = tableIn(String((err as Error | null)?.message ?? ''));
      return storeFailure(
        'fault',
        'storage_corrupt',
        table === null
          ? "the hub's database is damaged; an operator must repair it"
          : `the hub's database is damaged (table ${table}); an operator must repair it`,
        table === null ? undefined : { table },
      );
    }
    case 'storage_readonly':
      return storeFailure('fault', 'storage_readonly', "the hub cannot write to its database; an operator must check the disk and permissions");
  }
}

/** The fault record kept for readyz, doctor and the log: SQLite's own words, which hold no SQL values. */
export function faultRecord(code: FaultCode, err: unknown, at: number): StoreFault {
  const driver = sqliteCode(err) ?? 'unknown';
  const message = String((err as Error | null)?.message ?? '');
  return { code, message: `${driver}: ${message}`.slice(0, 500), at };
}

/**
 * What a store failure was, for metrics and the circuit breaker (never told apart by message
 * text, nor mixed up with an op's own `unavailable`, e.g. its client having left):
 * `busy` (contention past the retries), `outage` (the server cannot be reached, lost, too slow),
 * `fault` (disk full, damage, read-only: the store answered and refused).
 */
export type StoreFailureKind = 'busy' | 'outage' | 'fault';

const KINDS = new WeakMap<BatonError, StoreFailureKind>();

/** A BatonError the store raised itself, marked with its kind. */
export function storeFailure(kind: StoreFailureKind, code: ErrorCode, message: string, details?: Record<string, unknown>): BatonError {
  const err = new BatonError(code, message, details);
  KINDS.set(err, kind);
  return err;
}

/** The kind of a failure the store raised, or null for anything else (an op's own error). */
export function storeFailureKind(err: unknown): StoreFailureKind | null {
  return err instanceof BatonError ? (KINDS.get(err) ?? null) : null;
}

/**
 * What a caller gets when contention outlasted the store's own retries (SQLite busy past the
 * busy timeout; PostgreSQL serialization failures or deadlocks past the retry budget).
 */
export function busyError(): BatonError {
  return storeFailure('busy', 'unavailable', 'the store is busy; retry shortly');
}

/**
 * Another connection holds the lock (any SQLITE_BUSY variant, incl. BUSY_RECOVERY and
 * BUSY_SNAPSHOT, or SQLITE_LOCKED): retryable, never a fault. One definition for the store's
 * retries and the runner's `unavailable` answer.
 */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED');
}
