import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { BatonError } from '../core/errors.js';
import type { Db, Executor, IntegrityReport, Migration, Profile, StoreFault, WriteFault, WriteLock, WriteMode, WriteOptions } from './db.js';
import { POSTGRES } from './dialect.js';
import { busyError, storeFailure, type FaultCode } from './faults.js';
import { WriteMemo } from './memo.js';
import { render, sql, type Sql } from './sql.js';

const PROFILE: Profile = { name: 'postgres', eventsInCommitOrder: false };

/** Most writes committed together: bounds how long one batch holds its locks. */
const MAX_BATCH = 64;
/** How long a start waits for another instance that is migrating the schema (ms). */
const MIGRATE_WAIT_MS = 60_000;
/** The NOTIFY channel of writes that append events (payload: schema and sender), LISTENed by `subscribe`. */
const CHANNEL = 'baton_commit';
/**
 * Advisory lock classes (the first key of the two-key form); the second key is the schema's.
 * SERVER_LOCK is taken shared by every write and exclusive by a `server` write; AUDIT_LOCK
 * guards the head of the server-level audit chain (rows of no project; a project's chain is
 * guarded by the project's own lock, migration 14). A project's lock is the one-key (bigint) form: a hash of the
 * schema and the project id (a collision only makes two projects take turns).
 */
const SERVER_LOCK = 0x6261_7401; // "bat" 01
const MIGRATE_LOCK = 0x6261_7402;
const AUDIT_LOCK = 0x6261_7403;
/** While one fault persists, onFault hears of it again at most this often (ms). */
const FAULT_REPORT_MS = 10_000;
/** The client's query_timeout is the server's statement_timeout and busyTimeoutMs plus this (ms): the server ends a slow statement itself first. */
const QUERY_TIMEOUT_MARGIN_MS = 5_000;

export interface PostgresOptions {
  url: string;
  poolSize?: number | undefined;
  statementTimeoutMs?: number | undefined;
  /** The schema Baton's tables live in; created if missing. Default `public`. */
  schema?: string | undefined;
  /** How long a transaction is retried on serialization failures, deadlocks and lost connections (ms). */
  busyTimeoutMs?: number | undefined;
  onFault?: ((err: unknown, fault: StoreFault) => void) | undefined;
}

interface Pending {
  fn: (ex: Executor) => Promise<unknown>;
  mode: WriteMode;
  /** The project whose lock the op takes, when known (from the caller, or learned at a Requeue). */
  project: string | undefined;
  /** Reads to start ahead, in a batch formed for `project` (db.ts WriteOptions). */
  ahead: ((ex: Executor) => void) | undefined;
  /** May run beside the batch's other parallel writes (db.ts WriteOptions). */
  parallel: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** int8 (counts, ids, times in ms) and numeric (sums) as numbers: every value Baton keeps fits in 2^53. */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 || oid === 1700) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

function bind(values: readonly unknown[]): unknown[] {
  return values.map((v) => (v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v));
}

function pgCode(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}

/**
 * Serialization failure or deadlock, or a prepared statement gone stale (isStalePlan): the
 * transaction did nothing and is worth running again.
 */
export function isRetryable(err: unknown): boolean {
  const code = pgCode(err);
  return code === '40001' || code === '40P01' || isStalePlan(err);
}

/**
 * A statement this connection prepared no longer fits the schema ("cached plan must not change
 * result type": another instance's migration added a column to a table it reads with `*`), or is
 * gone from the session. The connection is dropped (withClient) and the work runs again on a new
 * one, which prepares afresh.
 */
export function isStalePlan(err: unknown): boolean {
  const code = pgCode(err);
  return (code === '0A000' && /cached plan/i.test((err as Error).message ?? '')) || code === '26000';
}

/** Most distinct statements prepared by name; past it, the rest run unnamed (IN lists of many lengths). */
const MAX_PREPARED = 2_000;
const prepared = new Map<string, string>();

/**
 * The name a statement is prepared under on every connection (node-postgres parses a named
 * statement once per connection, then only binds and executes it): the server skips parsing
 * and planning each time, about 40 % of its CPU per claim+complete in bench/pg-statements.ts.
 */
function statementName(text: string): string | undefined {
  let name = prepared.get(text);
  if (name === undefined && prepared.size < MAX_PREPARED) {
    name = `baton_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    prepared.set(text, name);
  }
  return name;
}

/**
 * The pool could not open a connection: whatever the server or the network said (refused, a
 * wrong password after a rotation, too many clients, a database not accepting connections), the
 * store cannot be reached, which is an outage (503 with Retry-After, the breaker counts it), not
 * a bug. `reason` is the server's or the socket's message, for the operator's log and the CLI.
 */
export class ConnectFailed extends Error {
  constructor(readonly reason: string, readonly sqlState: string | null) {
    super(`cannot connect to the database: ${reason}${sqlState === null ? '' : ` (${sqlState})`}`);
    this.name = 'ConnectFailed';
  }
  static of(err: unknown): ConnectFailed {
    return err instanceof ConnectFailed ? err : new ConnectFailed(String((err as Error | null)?.message ?? err).slice(0, 300), pgCode(err));
  }
}

/**
 * A `pool.connect()` failure: the pool full past connectionTimeoutMillis is contention (busy,
 * never counted by the breaker), a pool already ended is the hub closing; anything else is the
 * server or the path to it (ConnectFailed).
 */
function connectFailure(err: unknown): unknown {
  const message = String((err as Error | null)?.message ?? '');
  if (/timeout exceeded when trying to connect/i.test(message)) return busyError();
  if (/Cannot use a pool after calling end/i.test(message)) return new BatonError('shutting_down', 'the store is closing');
  return ConnectFailed.of(err);
}

/** The server or the connection went away (or refused us): `unavailable`, retried while the budget lasts. */
export function isConnectionLoss(err: unknown): boolean {
  if (err instanceof ConnectFailed) return true;
  const code = pgCode(err);
  // "Query read timeout": the client's query_timeout, past the server's statement_timeout: the
  // server (or the path to it) stopped answering; pg destroyed the pipelined connection.
  if (code === null) return err instanceof Error && /Connection terminated|connection timeout|Client has encountered a connection error|Query read timeout/i.test(err.message);
  return (
    code.startsWith('08') ||
    code === '57P01' || // admin_shutdown
    code === '57P02' || // crash_shutdown
    code === '57P03' || // cannot_connect_now
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'ETIMEDOUT' ||
    code === 'EPIPE' ||
    code === 'ENOTFOUND' ||
    code === 'EAI_AGAIN'
  );
}

function faultCodeOf(err: unknown): FaultCode | null {
  const code = pgCode(err);
  if (code === null) return null;
  if (code === '53100') return 'storage_full'; // disk_full
  if (code === 'XX001' || code === 'XX002') return 'storage_corrupt'; // data_corrupted, index_corrupted
  if (code === '25006' || code === '42501') return 'storage_readonly'; // read-only transaction (a standby), no privilege
  return null;
}

/** The two int4 keys of the schema's advisory locks: the class and a hash of the schema name. */
function lockKey(schema: string): number {
  return createHash('sha256').update(schema).digest().readInt32BE(0);
}

/** The two keys of the server chain's head lock (the `audit` WriteLock): for operators and tests that look at pg_locks. */
export function serverChainLockKeys(schema: string): [number, number] {
  return [AUDIT_LOCK, lockKey(schema)];
}

/** The one bigint key of a project's writer lock (as a string: pg binds it exactly). */
export function projectLockKey(schema: string, projectId: string): string {
  return createHash('sha256').update(`${schema}\0${projectId}`).digest().readBigInt64BE(0).toString();
}

/** The advisory locks one write transaction holds (until it ends), and what its COMMIT must also do. */
interface Held {
  server: 'none' | 'shared' | 'exclusive';
  project: string | null;
  audit: boolean;
  /** An op kept in the transaction appended events: its COMMIT sends the one NOTIFY (commitWrite). */
  announce: boolean;
  /** The transaction's memo (db.ts TxMemo): marked at each op's SAVEPOINT, flushed before COMMIT. */
  memo: WriteMemo;
  /**
   * The first failure of a statement sent without waiting (Executor.send, and the store's own
   * BEGIN, SAVEPOINTs and lock): PostgreSQL then refuses every later statement of the
   * transaction, and COMMIT rolls it back. Checked after every answer the store waits for
   * (pipelined answers come in order, so by then it has heard of every statement sent before).
   */
  failure: { error: unknown } | null;
}

/** What one op did that only counts if its SAVEPOINT is kept. */
interface OpState {
  announced: boolean;
}

/**
 * The op needs a lock its batch's transaction cannot take in order (another project's, or
 * `server` after a shared one): rolled back to its savepoint, it runs in a later batch.
 */
class Requeue extends Error {
  constructor(readonly project?: string) {
    super('needs a transaction of its own');
  }
}

/**
 * An op of a batch run without savepoints failed (or needs another transaction): its changes
 * cannot be undone alone, so the whole transaction is rolled back and the batch runs again, each
 * op in a SAVEPOINT (runBatch).
 */
class Unguarded extends Error {
  /** `requeued`: the op only needs another transaction (a project's lock); no op failed. */
  constructor(readonly requeued: boolean) {
    super('an op failed in a batch without savepoints');
  }
}

/** After a batch had to run again with savepoints, this many batches take them from the start. */
const GUARDED_BATCHES = 32;

/**
 * The connection was lost while COMMIT was in flight: the transaction may or may not have
 * committed. Never run again (that could apply it twice); the caller hears `unavailable` and
 * that the outcome is unknown.
 */
class CommitUnknown extends Error {
  constructor(readonly lost: unknown) {
    super('commit outcome unknown');
  }
}

/**
 * COMMIT, telling a lost connection during it (outcome unknown) from any other failure. `notify`:
 * the NOTIFY other instances' waiters hear, sent in the same round trip (a simple query of two
 * statements: the payload is a checked identifier and hex, see PostgresDb.payload).
 */
async function commit(client: pg.PoolClient, notify: string | null): Promise<void> {
  try {
    await client.query(notify === null ? 'COMMIT' : `SELECT pg_notify('${CHANNEL}', '${notify}'); COMMIT`);
  } catch (error) {
    throw isConnectionLoss(error) ? new CommitUnknown(error) : error;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A statement of a write transaction sent without waiting for its answer (the pool's connections
 * pipeline: it goes out at once, ahead of the statements after it). Its failure is kept in
 * `held.failure` for the store to find (checkSent).
 */
function sendAhead(held: Held, sent: Promise<unknown>): void {
  sent.then(undefined, (error: unknown) => {
    held.failure ??= { error };
  });
}

/**
 * After an answer the store waited for: a statement sent before it failed, so the transaction is
 * lost (PostgreSQL refused everything after it, and its COMMIT was a rollback).
 */
function checkSent(held: Held): void {
  if (held.failure !== null) throw held.failure.error;
}

/**
 * A schema that holds another application's tables is refused before anything is created in it:
 * a `schema_migrations` that is not Baton's (a Rails or Flyway one), or, with none, tables of the
 * names Baton would create (its migrations' CREATE TABLEs). The migration otherwise failed half
 * way with "relation already exists" or a type error, shown as "unexpected error". Tables of other
 * names do not stop it: Baton can share a schema with them.
 */
async function refuseForeignSchema(ex: Executor, schema: string, migrations: readonly Migration[]): Promise<void> {
  // pg_tables lists every table of the schema, also those this role may not read
  // (information_schema shows only tables the role has a privilege on).
  const tables = new Set(
    (await ex.all<{ name: string }>(sql`SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()`)).map((r) => r.name),
  );
  const advice = `give Baton a schema of its own (databaseSchema, BATON_DATABASE_SCHEMA) or an empty database`;
  if (tables.has('schema_migrations')) {
    const cols = (
      await ex.all<{ name: string }>(sql`SELECT attname AS name FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass AND attnum > 0 AND NOT attisdropped`)
    )
      .map((r) => r.name)
      .sort();
    if (cols.join(',') !== 'applied_at,name,version') throw new BatonError('conflict', `PostgreSQL schema "${schema}" holds another application's schema_migrations table: ${advice}`);
    return;
  }
  const ours = new Set(migrations.flatMap((m) => [...m.postgres.matchAll(/CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)/g)].map((x) => x[1]!)));
  const clash = [...tables].filter((t) => ours.has(t)).sort();
  if (clash.length > 0) throw new BatonError('conflict', `PostgreSQL schema "${schema}" already holds tables Baton did not create (${clash.slice(0, 5).join(', ')}): ${advice}`);
}

/**
 * PostgreSQL via `pg` (node-postgres): a pool of connections, every one with the schema on its
 * search_path and a statement_timeout.
 *
 * Writers take transaction-level advisory locks in one order (server, then their project, then
 * the server-level audit chain's head; take() and docs/ARCHITECTURE.md "Writers on PostgreSQL"): a project's
 * writes take turns on every instance, other projects' run beside them, and within an instance
 * writes of one project queued together commit together (group commit, each op in its own
 * SAVEPOINT, as in sqlite.ts). So ops written for one writer at a time (check-then-insert
 * quotas, lock overlap, the project's audit chain head) stay correct across instances.
 *
 * Reads run at REPEATABLE READ (one snapshot per read, as a SQLite read transaction), in
 * parallel on the pool.
 *
 * Errors: serialization failures and deadlocks are retried here, and connection losses while the
 * budget (busyTimeoutMs) lasts; what is left becomes `unavailable`. Disk full, damage and
 * read-only become the storage fault codes; anything else stays as it is (a bug: `internal`).
 */
export class PostgresDb implements Db {
  readonly profile = PROFILE;
  private readonly writes: Pending[] = [];
  /** Batches in flight (each on its own connection); at most maxDrainers. */
  private readonly drainers = new Set<Promise<void>>();
  /** The projects (undefined: not known, or `server` writes) with a batch in flight here (nextBatch). */
  private readonly inFlight = new Set<string | undefined>();
  private kickScheduled = false;
  /** Batches left that take a savepoint per op from the start (writeBatch, after one had to run again). */
  private guardedBatches = 0;
  private readonly instance = randomBytes(8).toString('hex');
  /** The NOTIFY payload of this instance's commits: `schema:instance` (subscribe filters its own out). */
  private readonly payload: string;
  private readonly key: number;
  private readonly listeners = new Set<() => void>();
  private listener: pg.Client | null = null;
  private listening: Promise<void> | null = null;
  private currentFault: StoreFault | null = null;
  private reportedAt = -Infinity;
  private lastReported: StoreFault | null = null;
  private blocked: WriteFault | null = null;
  private integrity: IntegrityReport | null = null;
  private closed = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly options: PostgresOptions,
    private readonly schema: string,
  ) {
    this.key = lockKey(schema);
    this.payload = `${schema}:${this.instance}`;
    // commit() sends it inside a literal: it must never be anything but an identifier and hex.
    if (!/^[a-z_][a-z0-9_]{0,62}:[0-9a-f]{16}$/.test(this.payload)) throw new Error('unexpected NOTIFY payload');
  }

  static async open(options: PostgresOptions): Promise<PostgresDb> {
    const schema = options.schema ?? 'public';
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new BatonError('invalid_input', 'database schema: lower-case letters, digits and _');
    const statementTimeout = options.statementTimeoutMs ?? 30_000;
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      statement_timeout: statementTimeout,
      // The server's statement_timeout cannot end a wait for a server that stopped answering (a
      // frozen host, a dropped network path: the socket stays open): the client gives up a little
      // after it, the connection is dropped and the caller gets `unavailable` instead of waiting
      // until the server answers again (a probe saw 186 s, and a SIGTERM that could not stop).
      // The timer starts when a statement is queued on the connection, which may be behind a lock
      // wait (busyTimeoutMs) in the pipeline: that much more.
      query_timeout: statementTimeout + Math.max(0, options.busyTimeoutMs ?? 5000) + QUERY_TIMEOUT_MARGIN_MS,
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      types: TYPES,
      // Statements sent without waiting (Executor.send, BEGIN, SAVEPOINTs) go out at once, ahead
      // of the next: a write transaction waits for fewer round trips than it sends.
      pipeline: true,
      // Set at connection startup (no statement per connection); the name is checked above.
      // lock_timeout bounds every lock wait by busyTimeoutMs, reads' too (a write transaction sets
      // its own, the same): a table locked by another session answers `unavailable` after it,
      // not after statement_timeout.
      options: `-c search_path=${schema} -c lock_timeout=${Math.max(1, Math.floor(options.busyTimeoutMs ?? 5000))}`,
      // Operators (pg_stat_activity) and tests see whose connections these are.
      application_name: `baton:${schema}`,
    });
    // An idle connection's error (the server restarted) must not crash the process; the next
    // checkout gets a new connection.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => {
      client.on('error', () => undefined);
    });
    const db = new PostgresDb(pool, options, schema);
    try {
      // The first connection says plainly why it fails (a wrong password, a database that does
      // not exist, a refused port): the operator starting the hub reads it.
      await pool.connect().then(
        (client) => client.release(),
        (err: unknown) => {
          throw ConnectFailed.of(err);
        },
      );
      // Created only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even
      // when the schema exists, which a role given only its own schema (by a DBA) does not have.
      const exists = await pool.query({ text: 'SELECT 1 FROM pg_namespace WHERE nspname = $1', values: [schema] });
      // The schema name is checked above (an identifier of [a-z0-9_]); quoted, it cannot be anything else.
      if (exists.rowCount === 0) await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    } catch (err) {
      await pool.end().catch(() => undefined);
      const e = db.failed(err); // reported (onFault) as any lost connection
      // At start the operator reads the reason (wrong password, no such database), not the generic answer.
      throw err instanceof ConnectFailed ? new BatonError('unavailable', err.message) : e;
    }
    return db;
  }

  /**
   * `held`: the write transaction's locks (lock() takes them); a read has none and lock() does
   * nothing: a read runs on its own snapshot, and the one write a read may make (an external
   * identity's first use) is guarded by its primary key.
   */
  private executor(client: pg.PoolClient | pg.Client, held?: Held, known = true, op?: OpState): Executor {
    const query = (q: Sql): Promise<pg.QueryResult> => {
      const text = render(q, POSTGRES.placeholder);
      return client.query({ name: statementName(text), text, values: bind(q.values) });
    };
    return {
      dialect: POSTGRES,
      all: async <T>(q: Sql) => (await query(q)).rows as T[],
      get: async <T>(q: Sql) => (await query(q)).rows[0] as T | undefined,
      run: async (q: Sql) => ({ changes: (await query(q)).rowCount ?? 0 }),
      // In a write transaction: sent now, its answer heard with the next one the store waits for.
      send: async (q: Sql) => {
        if (held === undefined) await query(q);
        else sendAhead(held, query(q));
      },
      lock: async (what: WriteLock) => {
        if (held !== undefined) await this.take(client, held, what, known);
      },
      // In a write, remembered and sent once with its COMMIT (commitWrite), and only when the op
      // that appended is kept: one round trip per transaction instead of one per event.
      announce: async () => {
        if (op !== undefined) op.announced = true;
        else await client.query({ text: 'SELECT pg_notify($1, $2)', values: [CHANNEL, this.payload] });
      },
      memo: held?.memo ?? null,
    };
  }

  /**
   * Takes `what` in the one order every transaction follows (server, then a project, then the
   * server-level audit chain's head), so no two writers wait for each other in a cycle; a lock
   * that would break the order (a second project, a project after the server chain's head,
   * `server` after a shared one) is
   * refused with Requeue: its op runs in a transaction of its own.
   *
   * `known`: the batch was formed for this project. An op whose project was not known (its
   * caller is authenticated inside the transaction) only tries the project's lock: were it to
   * wait, every op queued behind it in the batch would wait too, whatever their project. Refused,
   * it goes back to the queue with its project now known, and waits in a batch of its project's.
   */
  private async take(client: pg.PoolClient | pg.Client, held: Held, what: WriteLock, known: boolean): Promise<void> {
    if (held.server === 'exclusive') return;
    const advisory = (fn: string, values: unknown[]): Promise<unknown> =>
      client.query({ text: `SELECT ${fn}(${values.map((_, i) => `$${i + 1}`).join(', ')})`, values });
    if (what === 'server') {
      if (held.server !== 'none') throw new Requeue();
      await advisory('pg_advisory_xact_lock', [SERVER_LOCK, this.key]);
      held.server = 'exclusive';
      return;
    }
    // The server lock (shared) comes first; with a project's lock, in the same statement (a
    // SELECT evaluates its target list in order).
    const needShared = held.server === 'none';
    if (needShared && (what === 'shared' || what === 'audit')) {
      await advisory('pg_advisory_xact_lock_shared', [SERVER_LOCK, this.key]);
      held.server = 'shared';
    }
    if (what === 'shared') return;
    if (what === 'audit') {
      if (!held.audit) await advisory('pg_advisory_xact_lock', [AUDIT_LOCK, this.key]);
      held.audit = true;
      return;
    }
    if (held.project === what.project) return;
    if (held.project !== null || held.audit) throw new Requeue(what.project);
    const key = projectLockKey(this.schema, what.project);
    const shared = needShared ? 'pg_advisory_xact_lock_shared($2, $3), ' : '';
    const values = needShared ? [key, SERVER_LOCK, this.key] : [key];
    // The shared server lock is taken by the statement below whatever becomes of the project's.
    if (needShared) held.server = 'shared';
    // A blocking lock has no answer to wait for: the op's statements queue behind it on the server
    // (a lock_timeout fails the transaction, found like any statement sent ahead).
    if (known) sendAhead(held, client.query({ text: `SELECT ${shared}pg_advisory_xact_lock($1)`, values }));
    else {
      const got = await client.query<{ ok: boolean }>({ text: `SELECT ${shared}pg_try_advisory_xact_lock($1) AS ok`, values });
      if (got.rows[0]?.ok !== true) throw new Requeue(what.project);
    }
    held.project = what.project;
  }

  /**
   * The error a caller gets for `error`: a storage fault becomes its stable BatonError (and is
   * recorded for fault() and reported to onFault); contention and a lost server `unavailable`;
   * anything else stays.
   */
  private failed(error: unknown): unknown {
    if (error instanceof BatonError) return error;
    if (error instanceof CommitUnknown) {
      this.report(error.lost, { code: 'storage_unreachable', message: 'connection lost during COMMIT', at: Date.now() }, false);
      return storeFailure('outage', 'unavailable', 'the store connection was lost while committing: the write may or may not have been applied; check before retrying');
    }
    if (isRetryable(error)) return busyError();
    if (isConnectionLoss(error)) {
      this.report(error, { code: 'storage_unreachable', message: `connection: ${String((error as Error).message ?? '')}`.slice(0, 500), at: Date.now() }, false);
      return storeFailure('outage', 'unavailable', 'the store cannot be reached; retry shortly');
    }
    if (pgCode(error) === '57014') return storeFailure('outage', 'unavailable', 'the store took too long; retry shortly'); // statement_timeout
    if (pgCode(error) === '55P03') return busyError(); // lock_timeout: another instance held a lock past busyTimeoutMs
    // unique_violation: a concurrent request created the same row (retried first where that can help).
    if (pgCode(error) === '23505') return new BatonError('conflict', 'a concurrent request created the same thing; retry');
    const code = faultCodeOf(error);
    if (code === null) return error;
    const fault: StoreFault = { code, message: `${pgCode(error) ?? 'unknown'}: ${String((error as Error).message ?? '')}`.slice(0, 500), at: Date.now() };
    this.report(error, fault, true);
    const messages = {
      storage_full: "the hub's disk is full; retry later",
      storage_corrupt: "the hub's database is damaged; an operator must repair it",
      storage_readonly: 'the hub cannot write to its database; an operator must check the database server',
    } as const;
    return storeFailure('fault', code, messages[code], code === 'storage_full' ? { retry_after_s: 30 } : undefined);
  }

  /** Tells the operator (at most every FAULT_REPORT_MS per fault); `record`: it is a fault fault() reports. */
  private report(error: unknown, fault: StoreFault, record: boolean): void {
    // Compared with the last one reported, not the fault in force: an outage is not recorded as
    // one (fault() stays null), and compared with that it was reported at every failed call.
    const previous = this.lastReported;
    if (record) this.currentFault = fault;
    const now = performance.now();
    if (previous?.code !== fault.code || previous.message !== fault.message || now - this.reportedAt >= FAULT_REPORT_MS) {
      this.lastReported = fault;
      this.reportedAt = now;
      try {
        this.options.onFault?.(error, fault);
      } catch {
        // A logger that throws must not turn a refused write into an unsettled one.
      }
    }
  }

  private get budgetMs(): number {
    return Math.max(0, this.options.busyTimeoutMs ?? 5000);
  }

  /** Runs `attempt` again on contention or a lost connection, with a short growing pause, until the budget is spent. */
  private async retrying<T>(attempt: () => Promise<T>, alsoRetry: (error: unknown) => boolean = () => false): Promise<T> {
    const deadline = performance.now() + this.budgetMs;
    for (let i = 0; ; i++) {
      try {
        return await attempt();
      } catch (error) {
        if (this.closed || !(isRetryable(error) || isConnectionLoss(error) || alsoRetry(error)) || performance.now() >= deadline) throw error;
        await sleep(Math.min(100, 2 ** i) * (0.5 + Math.random()));
      }
    }
  }

  /** A client from the pool; given back destroyed when its connection failed. */
  private async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect().catch((err: unknown) => {
      throw connectFailure(err);
    });
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (error) {
      // A stale prepared statement: the connection's others may be stale too; a new one prepares afresh.
      if (isConnectionLoss(error) || isStalePlan(error)) broken = error as Error;
      throw error;
    } finally {
      client.release(broken ?? false);
    }
  }

  /**
   * A read may write (an external issuer's agent is created on first use, in the request's own
   * transaction): two such reads racing on two instances meet a unique violation, and running
   * the read again finds the row the other created.
   */
  read<T>(fn: (ex: Executor) => Promise<T>): Promise<T> {
    return this.retrying(() =>
      this.withClient(async (client) => {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        try {
          const value = await fn(this.executor(client));
          await client.query('COMMIT');
          return value;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        }
      }),
      (error) => pgCode(error) === '23505',
    ).catch((error: unknown) => {
      throw this.failed(error);
    });
  }

  write<T>(fn: (ex: Executor) => Promise<T>, mode: WriteMode = 'server', project?: string, options: WriteOptions = {}): Promise<T> {
    if (this.blocked !== null) return Promise.reject(storeFailure('fault', this.blocked.code, this.blocked.message));
    return new Promise<T>((resolve, reject) => {
      this.writes.push({
        fn,
        mode,
        project: mode === 'declared' ? project : undefined,
        ahead: options.ahead,
        parallel: options.parallel === true,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      this.schedule();
    });
  }

  /** Batches run side by side on the pool (a project's take turns on its lock); some connections stay for reads. */
  private get maxDrainers(): number {
    return Math.max(1, (this.options.poolSize ?? 10) - 2);
  }

  /** As on SQLite: the first write of a batch waits for the rest of this I/O turn, so callers of one turn commit together. */
  private schedule(): void {
    if (this.kickScheduled || this.writes.length === 0) return;
    this.kickScheduled = true;
    setImmediate(() => {
      this.kickScheduled = false;
      while (this.drainers.size < this.maxDrainers) {
        const batch = this.nextBatch();
        if (batch === null) break;
        const d: Promise<void> = this.drain(batch).finally(() => {
          this.drainers.delete(d);
          this.schedule();
        });
        this.drainers.add(d);
      }
    });
  }

  /**
   * The next batch: the first queued write whose project has no batch in flight here, and up to
   * MAX_BATCH - 1 more for the same project (or, when its project is not known, others not known
   * either), in queue order; the rest stay queued. Null when every queued write waits for its
   * project's batch in flight.
   *
   * One batch per project at a time on an instance: a second would only wait for the project's
   * lock on a connection of its own, and the writes queued meanwhile would be split into small
   * batches; held back, they make the next batch, one transaction for all of them.
   */
  private nextBatch(): Pending[] | null {
    const first = this.writes.find((w) => !this.inFlight.has(w.project));
    if (first === undefined) return null;
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const w of this.writes) {
      if (batch.length < MAX_BATCH && w.project === first.project) batch.push(w);
      else rest.push(w);
    }
    this.writes.length = 0;
    this.writes.push(...rest);
    this.inFlight.add(first.project);
    return batch;
  }

  /** Runs `batch`, then the next batch this drainer may take, until none is left for it. */
  private async drain(batch: Pending[] | null): Promise<void> {
    while (batch !== null) {
      // Taken now: a Requeue changes an op's project while its batch runs.
      const key = batch[0]!.project;
      try {
        await this.writeBatch(batch);
      } catch (error) {
        // Last resort: writeBatch settles every caller itself.
        const e = this.failed(error);
        for (const w of batch) w.reject(e);
      } finally {
        this.inFlight.delete(key);
      }
      batch = this.writes.length > 0 ? this.nextBatch() : null;
    }
  }

  /**
   * BEGIN; the locks come with each op (take()), and a NOTIFY with each event it appends
   * (announce()). Every lock wait of the transaction is bounded by busyTimeoutMs (lock_timeout), as
   * SQLite's busy timeout bounds its wait for another process's write lock; past it the write
   * answers `unavailable`.
   */
  private beginWrite(client: pg.PoolClient): Held {
    // One statement, sent ahead of the first op's (not waited for): BEGIN and the transaction's
    // lock_timeout (an integer). A guarded batch's first SAVEPOINT follows its reads ahead (runBatch).
    const timeout = Math.max(1, Math.floor(this.budgetMs));
    const held: Held = { server: 'none', project: null, audit: false, announce: false, memo: new WriteMemo(), failure: null };
    sendAhead(held, client.query(`BEGIN; SET LOCAL lock_timeout = ${timeout}`));
    return held;
  }

  /**
   * The memo's last writes, then COMMIT (with the transaction's one NOTIFY when a kept op appended
   * events). A statement sent ahead that failed made the COMMIT a rollback: the transaction is lost.
   */
  private async commitWrite(client: pg.PoolClient, held: Held): Promise<void> {
    await held.memo.flush(this.executor(client, held));
    await commit(client, held.announce ? this.payload : null);
    checkSent(held);
  }

  /**
   * One op in the write transaction: its mode's lock first, then the op itself. `alone`: the op
   * has the transaction to itself, so it may wait for its project's lock (nobody queues behind it).
   */
  private async runOp(client: pg.PoolClient, held: Held, w: Pending, op: OpState, alone = false): Promise<unknown> {
    const ex = this.executor(client, held, alone || w.project !== undefined, op);
    if (w.mode === 'server') await ex.lock('server');
    return w.fn(ex);
  }

  /**
   * Group commit, as in sqlite.ts: each op in its own SAVEPOINT, one COMMIT for the batch,
   * nobody answered before it. When the transaction is lost (a connection loss, a serialization
   * failure), the ops that succeeded in it and those not yet run run again, each alone.
   */
  private async writeBatch(all: Pending[]): Promise<void> {
    let batch: Pending[] = [];
    let later: Pending[] = [];
    const outcomes: Outcome[] = [];
    let lost: unknown = null;
    // Savepoints only where an op failed lately: most batches fail nowhere, and a SAVEPOINT per op
    // is a statement per op, and a subtransaction (past 64 in one transaction PostgreSQL's
    // snapshots slow down for every session).
    let guarded = all.length > 1 && this.guardedBatches > 0;
    if (this.guardedBatches > 0) this.guardedBatches--;
    // A connection lost before COMMIT undid the whole transaction: the batch runs once more on a
    // fresh connection (a pooled one the server dropped, e.g. after its restart, is the usual case).
    for (let attempt = 0; attempt < 2; attempt++) {
      batch = [];
      later = [];
      outcomes.length = 0;
      lost = null;
      try {
        await this.runBatch(all, batch, outcomes, later, guarded);
      } catch (error) {
        lost = error;
      }
      if (lost instanceof Unguarded) {
        // Rolled back, nothing answered: again, with a savepoint per op (not a connection's retry).
        // A failing op makes the next batches guarded from the start too (failures come in runs,
        // e.g. an agent retrying a lost lease); an op handed to another transaction does not.
        guarded = true;
        if (!lost.requeued) this.guardedBatches = GUARDED_BATCHES;
        attempt--;
        continue;
      }
      if (lost === null || !isConnectionLoss(lost) || this.closed) break;
    }
    // Ops that need a transaction of their own (another project's lock) go first in the queue;
    // the ones the batch never reached (it failed first) run again as below.
    const reached = new Set([...batch, ...later]);
    const unreached = all.filter((w) => !reached.has(w));
    if (later.length > 0) {
      this.writes.unshift(...later);
      this.schedule();
    }
    await this.settleBatch([...batch, ...unreached], outcomes, lost);
  }

  /**
   * `ran`: the ops the transaction ran, in order, with `outcomes`; `later`: those it handed back
   * (Requeue). `guarded`: each op runs in a SAVEPOINT. An op that failed is then undone with
   * ROLLBACK TO SAVEPOINT, which keeps the savepoint for the next op; one that succeeded is kept
   * with RELEASE and the next savepoint in one simple query (sent ahead); the last needs neither
   * (COMMIT keeps it). Unguarded (the usual case), the first op that fails or is handed back ends
   * the transaction (Unguarded: writeBatch runs the batch again, guarded). A batch of one op has
   * no savepoint: when it fails, the transaction is rolled back instead.
   */
  private async runBatch(all: Pending[], ran: Pending[], outcomes: Outcome[], later: Pending[], guarded: boolean): Promise<void> {
    await this.withClient(async (client) => {
      const savepoints = guarded && all.length > 1;
      const held = this.beginWrite(client);
      let kept = false;
      try {
        // A batch formed for one project (its ops all declared it, none a `server` write): every
        // op's reads ahead go out now, pipelined behind BEGIN. Not in a batch of unknown projects,
        // where a `server` op (a key's revocation) may run before the ops that read ahead.
        if (all[0]!.project !== undefined) {
          const ex = this.executor(client, held);
          for (const w of all) w.ahead?.(ex);
          // Reads ahead may go out in this turn's microtasks (a batch's keys in one statement,
          // then its lock and chain head): they run before this continuation.
          await null;
        }
        // After the reads ahead: a lock they took is the transaction's, not the first op's (a
        // lock taken inside a savepoint goes when the savepoint is rolled back).
        if (savepoints) sendAhead(held, client.query('SAVEPOINT op'));
        const known = all[0]!.project !== undefined;
        for (let i = 0; i < all.length; ) {
          // Unguarded, in a batch formed for one project: a run of parallel writes goes together,
          // their statements interleaved (db.ts WriteOptions.parallel); one at a time otherwise.
          let n = 1;
          if (!savepoints && known && all[i]!.parallel) while (i + n < all.length && all[i + n]!.parallel) n++;
          const group = all.slice(i, i + n);
          const states: OpState[] = group.map(() => ({ announced: false }));
          // Locks taken inside a savepoint are released when it is rolled back (PostgreSQL's rule
          // for every lock, advisory ones too): a failed op's locks must not count as held.
          const before: Held = { ...held };
          const mark = held.memo.mark();
          const results = await Promise.all(
            group.map((w, k) =>
              this.runOp(client, held, w, states[k]!).then(
                (value): Outcome => ({ ok: true, value }),
                (error: unknown): Outcome => ({ ok: false, error }),
              ),
            ),
          );
          // A statement sent ahead failed (these ops', or one before them): the transaction is
          // lost, and an op's own failure may only be PostgreSQL refusing what came after it.
          checkSent(held);
          for (let k = 0; k < n; k++) {
            const w = group[k]!;
            const outcome = results[k]!;
            if (!outcome.ok && (isRetryable(outcome.error) || isConnectionLoss(outcome.error))) throw outcome.error;
            // (A group of several is always unguarded: a failure in it ends here.)
            if (!outcome.ok && !savepoints && all.length > 1) throw new Unguarded(outcome.error instanceof Requeue);
            const last = i + k === all.length - 1;
            if (!outcome.ok) {
              if (savepoints) {
                await client.query('ROLLBACK TO SAVEPOINT op');
                // Heard after every statement before it: one of the op's sent ahead may have failed.
                checkSent(held);
              }
              Object.assign(held, before);
              held.memo.restore(mark);
            } else {
              kept = true;
              if (states[k]!.announced) held.announce = true;
              if (!last && savepoints) sendAhead(held, client.query('RELEASE SAVEPOINT op; SAVEPOINT op'));
            }
            if (!outcome.ok && outcome.error instanceof Requeue) {
              w.project = outcome.error.project ?? w.project;
              later.push(w);
              continue;
            }
            ran.push(w);
            outcomes.push(outcome);
          }
          i += n;
        }
        // Nothing to keep (a lone op failed, or every op did): its writes are undone.
        if (kept) await this.commitWrite(client, held);
        else await client.query('ROLLBACK');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      }
    });
  }

  private async settleBatch(batch: Pending[], outcomes: Outcome[], lost: unknown): Promise<void> {
    if (lost === null) {
      if (!outcomes.some((o) => !o.ok && faultCodeOf(o.error) !== null)) this.faultOver();
      batch.forEach((w, i) => {
        const o = outcomes[i]!;
        if (o.ok) w.resolve(o.value);
        else w.reject(this.failed(o.error));
      });
      return;
    }
    if (batch.length === 1 && !(isRetryable(lost) || isConnectionLoss(lost))) {
      batch[0]!.reject(this.failed(lost));
      return;
    }
    if (isConnectionLoss(lost) || lost instanceof CommitUnknown) {
      // The server is gone or unreachable (or the COMMIT's outcome is unknown): one batch's worth
      // of callers each retrying alone for the whole budget would hold the writer for minutes,
      // and a batch that may have committed must not run again. Refused at once (`unavailable`).
      const e = this.failed(lost);
      batch.forEach((w, i) => {
        const o = outcomes[i];
        w.reject(o !== undefined && !o.ok ? this.failed(o.error) : e);
      });
      return;
    }
    // Failed ops keep their own errors; the rest run alone (retried on contention).
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i];
      if (o !== undefined && !o.ok) batch[i]!.reject(this.failed(o.error));
      else await this.runAlone(batch[i]!);
    }
  }

  /** One caller in its own transaction, retried on contention; settles it, never throws. */
  private async runAlone(w: Pending): Promise<void> {
    try {
      const value = await this.retrying(() =>
        this.withClient(async (client) => {
          const held = this.beginWrite(client);
          try {
            const op: OpState = { announced: false };
            // Waits for its project's lock: a try-lock refused here would have no batch to requeue into.
            let v: unknown;
            try {
              v = await this.runOp(client, held, w, op, true);
            } finally {
              // PostgreSQL's refusal of what came after a failed statement sent ahead is not the op's error.
              checkSent(held);
            }
            if (op.announced) held.announce = true;
            await this.commitWrite(client, held);
            return v;
          } catch (error) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw error;
          }
        }),
      );
      this.faultOver();
      w.resolve(value);
    } catch (error) {
      w.reject(this.failed(error));
    }
  }

  /**
   * Other instances' commits, heard through LISTEN on one dedicated connection (not the pool's:
   * a LISTEN lives as long as its session). Own commits are filtered out by the payload. A lost
   * listening connection calls the listeners once (a commit may have been missed) and is opened
   * again while anyone listens.
   */
  subscribe(onCommit: () => void): () => void {
    this.listeners.add(onCommit);
    if (this.listener === null && this.listening === null) this.listening = this.listen();
    return () => {
      this.listeners.delete(onCommit);
      if (this.listeners.size === 0) this.unlisten();
    };
  }

  private notifyAll(): void {
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch {
        // One listener's failure must not keep the others from hearing of the commit.
      }
    }
  }

  private async listen(): Promise<void> {
    // Named apart from the pool's (operators, and tests that wait for the LISTEN to be up).
    const client = new pg.Client({ connectionString: this.options.url, types: TYPES, application_name: `baton:${this.schema}:listen` });
    const lost = (): void => {
      if (this.listener !== client) return;
      this.listener = null;
      client.end().catch(() => undefined);
      this.notifyAll();
      if (this.listeners.size > 0 && !this.closed) {
        setTimeout(() => {
          if (this.listener === null && this.listening === null && this.listeners.size > 0 && !this.closed) this.listening = this.listen();
        }, 200).unref();
      }
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (n) => {
      const [schema, sender] = (n.payload ?? '').split(':');
      if (schema === this.schema && sender !== this.instance) this.notifyAll();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      if (this.listeners.size === 0 || this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.listener = client;
      // Commits made while the connection was being set up were not heard: say so once.
      this.notifyAll();
    } catch {
      await client.end().catch(() => undefined);
      // Waiters time out on their own; try again while anyone listens.
      if (this.listeners.size > 0 && !this.closed) {
        setTimeout(() => {
          if (this.listener === null && this.listening === null && this.listeners.size > 0 && !this.closed) this.listening = this.listen();
        }, 1000).unref();
      }
    } finally {
      this.listening = null;
    }
  }

  private unlisten(): void {
    const client = this.listener;
    this.listener = null;
    client?.end().catch(() => undefined);
  }

  /**
   * Applies the pending migrations under a session advisory lock (per schema): instances started
   * together take turns, and each applies only what the one before it did not. All pending
   * migrations commit together or not at all (PostgreSQL DDL is transactional).
   */
  async migrate(migrations: readonly Migration[], now: number): Promise<number> {
    const known = Math.max(0, ...migrations.map((m) => m.version));
    try {
      return await this.withClient(async (client) => {
        const deadline = performance.now() + Math.max(this.budgetMs, MIGRATE_WAIT_MS);
        for (;;) {
          const got = await client.query<{ ok: boolean }>({ text: 'SELECT pg_try_advisory_lock($1, $2) AS ok', values: [MIGRATE_LOCK, this.key] });
          if (got.rows[0]?.ok === true) break;
          if (performance.now() >= deadline) throw busyError();
          await sleep(50);
        }
        try {
          // A migration may wait for a running hub's locks (statement_timeout still bounds it); the
          // connection's lock_timeout (busyTimeoutMs) is for requests.
          await client.query('BEGIN; SET LOCAL lock_timeout = 0');
          await refuseForeignSchema(this.executor(client), this.schema, migrations);
          await client.query(
            'CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
          );
          const ex = this.executor(client);
          const applied = (await ex.get<{ v: number }>(sql`SELECT coalesce(max(version), 0) AS v FROM schema_migrations`))?.v ?? 0;
          if (applied > known) throw new Error(`database schema version ${applied} is newer than this Baton (${known}); upgrade Baton`);
          let count = 0;
          for (const m of migrations) {
            if (m.version <= applied) continue;
            await client.query(m.postgres);
            await ex.run(sql`INSERT INTO schema_migrations (version, name, applied_at) VALUES (${m.version}, ${m.name}, ${now})`);
            count++;
          }
          await client.query('COMMIT');
          return count;
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        } finally {
          await client.query({ text: 'SELECT pg_advisory_unlock($1, $2)', values: [MIGRATE_LOCK, this.key] }).catch(() => undefined);
        }
      });
    } catch (error) {
      throw this.failed(error);
    }
  }

  /**
   * A commit without a fault: the fault in force is over, but for damage (`storage_corrupt`),
   * which does not mend while the hub runs (as on SQLite, sqlite.ts faultOver). A full or
   * read-only server is taken as over at the next commit: its disk cannot be asked from here.
   */
  private faultOver(): void {
    if (this.currentFault?.code !== 'storage_corrupt') this.currentFault = null;
  }

  fault(): StoreFault | null {
    return this.blocked ?? this.currentFault;
  }

  block(fault: WriteFault | null): void {
    this.blocked = fault;
  }

  lastIntegrity(): IntegrityReport | null {
    return this.integrity;
  }

  /**
   * PostgreSQL checks its own pages (data checksums, WAL replay) and has no quick_check: both
   * modes confirm that the server answers and the schema is readable. Page-level verification
   * (amcheck) is the operator's, with the server's own tools.
   */
  async checkIntegrity(deep: boolean): Promise<IntegrityReport> {
    const problems: string[] = [];
    try {
      await this.read((ex) => ex.get(sql`SELECT max(version) AS v FROM schema_migrations`));
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
    this.integrity = { ok: problems.length === 0, mode: deep ? 'deep' : 'quick', problems, at: Date.now() };
    return this.integrity;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.unlisten();
    // Queued writes run first: they were accepted. Their drain is scheduled a turn after the
    // first of them queued, so let that turn pass before queueing behind it.
    await new Promise((resolve) => setImmediate(resolve));
    while (this.drainers.size > 0) await Promise.all([...this.drainers]);
    await this.pool.end();
  }
}
