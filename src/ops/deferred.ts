import type { Durability } from '../store/sqlite.js';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { settlesWithin } from '../core/time.js';
import type { Db } from '../store/db.js';
import { deferredKey, markDeferred } from '../store/deferred-marks.js';
import { touchAgents, touchTokens } from '../store/directory.js';
import { appendAudits, groupByChain, SERVER_CHAIN, type AuditEntry } from '../store/journal.js';

/**
 * Writes that need not share the caller's transaction, batched into one transaction every
 * `intervalMs`: audit rows of reads and of refused calls, agent presence, token last use.
 * A read then costs no write transaction of its own (measured: a write transaction per read
 * roughly halves read throughput). Writing ops audit inside their own transaction instead.
 */
/**
 * Where a batch goes: written on this connection, or handed to a worker thread (WorkerSink).
 * `key`: the batch's mark (store/deferred-marks.ts), given when the batch may be handed on after
 * a writer that may have committed it already.
 */
export type DeferredSink = (audit: AuditEntry[], agents: Map<string, number>, tokens: Map<string, number>, key?: string) => Promise<void>;

/**
 * Hands batches to a worker thread with its own connection to the same database file
 * (`deferred-worker.ts`); each batch's promise settles when the worker has committed it.
 */
/** Writes batches on the given connection (writeDeferred). */
export function inlineSink(db: Db, auditKey: Buffer): DeferredSink {
  return (audit, agents, tokens, key) => writeDeferred(db, auditKey, audit, agents, tokens, key);
}

/**
 * Some of a batch's writes failed: the rows (and touches) that were not written, for the writer
 * to queue again instead of the whole batch (which would duplicate the chains that committed).
 */
export class PartialFlush extends Error {
  constructor(
    readonly failure: unknown,
    readonly audit: AuditEntry[],
    readonly touches: boolean,
  ) {
    super('some deferred writes failed');
  }
  get code(): string | undefined {
    return (this.failure as { code?: string } | null)?.code;
  }
}

/**
 * One batch of deferred writes: the touches in one write, and the audit rows in one write per
 * chain (ops audit into their project's chain under its lock: on PostgreSQL a transaction may hold
 * one project's lock only, and the deferred rows of many projects would otherwise need them all).
 * Issued together, so SQLite commits them as one group (one transaction, each write in its
 * savepoint) and PostgreSQL runs each in a batch of its project's writes. Touches take no project's
 * lock (they only move last-seen times forward, row by row); the server chain's rows take the
 * server chain's head last (journal.ts). Settles when every write has; a failure names what was
 * not written (PartialFlush).
 *
 * With a `key`, each chain's write marks `<key>/<chain>` in its transaction and appends nothing
 * when the mark is there already: a batch handed on after a worker that committed it and died
 * before answering is written once. (Touches need no mark: writing one twice changes nothing.)
 */
export async function writeDeferred(
  db: Db,
  auditKey: Buffer,
  audit: readonly AuditEntry[],
  agents: Map<string, number>,
  tokens: Map<string, number>,
  key?: string,
): Promise<void> {
  const byChain = groupByChain(audit);
  const touches = agents.size > 0 || tokens.size > 0;
  const writes: Promise<void>[] = [];
  if (touches) {
    writes.push(
      db.write(async (ex) => {
        await ex.lock('shared');
        await touchAgents(ex, agents);
        await touchTokens(ex, tokens);
      }, 'declared'),
    );
  }
  const chains = [...byChain];
  for (const [chain, rows] of chains) {
    const project = chain === SERVER_CHAIN ? undefined : chain;
    writes.push(
      db.write(async (ex) => {
        await ex.lock(project === undefined ? 'shared' : { project });
        if (key !== undefined && !(await markDeferred(ex, `${key}/${chain}`))) return;
        await appendAudits(ex, rows, auditKey);
      }, 'declared', project),
    );
  }
  const results = await Promise.allSettled(writes);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed === undefined) return;
  const offset = touches ? 1 : 0;
  const unwritten = chains.flatMap(([, rows], i) => (results[i + offset]!.status === 'rejected' ? rows : []));
  throw new PartialFlush(failed.reason, unwritten, touches && results[0]!.status === 'rejected');
}

/** How the deferred sink is doing: its worker's state and how many batches await a reply. */
export interface SinkHealth {
  /** `inline`: no worker (one-shot commands, tests) or the worker failed too often and batches go on the main connection. */
  state: 'alive' | 'restarting' | 'inline' | 'closed';
  /** Worker restarts since start. */
  restarts: number;
  /** Batches handed over and not yet committed. */
  pending: number;
}

interface InFlight {
  /** The batch's mark: the same for every writer it is handed to. */
  key: string;
  audit: AuditEntry[];
  agents: Map<string, number>;
  tokens: Map<string, number>;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

export interface WorkerSinkOptions {
  file: string;
  busyTimeoutMs: number;
  auditKey: Buffer;
  /** The worker's connection syncs like the main one (the `durability` setting). */
  durability?: Durability;
  /** Where batches go once the worker has failed `maxRestarts` times in a row (the main connection). */
  fallback: DeferredSink;
  log: Logger;
  maxRestarts?: number;
  /** First restart delay; doubles with each consecutive failure. */
  backoffMs?: number;
  /** A batch not answered within this is taken as a hung worker (it is terminated and restarted). */
  replyTimeoutMs?: number;
}

/**
 * Hands batches to a worker thread with its own connection to the same database file
 * (`deferred-worker.ts`); each batch's promise settles when the worker has committed it.
 * Supervised: when the worker errors, exits or stops answering, the batches it held are kept and
 * handed to a new worker (up to `maxRestarts` consecutive failures, with backoff), after that to
 * the fallback sink on the main connection. Every promise settles. Each batch carries a key that
 * its writes mark in the database (writeDeferred): a batch the worker committed just before it
 * died or was terminated is not written again by the next writer it is handed to.
 */
export class WorkerSink {
  private worker: Worker | null = null;
  private seq = 0;
  private readonly pending = new Map<number, InFlight>();
  private state: SinkHealth['state'] = 'alive';
  private restarts = 0;
  /** Failures since the last batch a worker committed. */
  private streak = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  /** Set when the data dir is gone: the worker's connection would write into an unlinked file. */
  private blocked: Error | null = null;
  private readonly maxRestarts: number;
  private readonly backoffMs: number;
  private readonly replyTimeoutMs: number;

  constructor(private readonly options: WorkerSinkOptions) {
    this.maxRestarts = options.maxRestarts ?? 5;
    this.backoffMs = options.backoffMs ?? 100;
    this.replyTimeoutMs = options.replyTimeoutMs ?? Math.max(30_000, options.busyTimeoutMs * 3);
    this.spawn();
  }

  private spawn(): void {
    const { file, busyTimeoutMs, auditKey, durability } = this.options;
    const worker = new Worker(new URL('./deferred-worker.js', import.meta.url), {
      workerData: { file, busyTimeoutMs, auditKey, durability },
    });
    this.worker = worker;
    this.state = 'alive';
    worker.on('message', (m: { id: number; ok: boolean; code?: string; unwritten?: number[]; touches?: boolean }) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (p.timer !== null) clearTimeout(p.timer);
      if (this.pending.size === 0) worker.unref();
      if (m.ok) {
        this.streak = 0;
        p.resolve();
      } else if (m.unwritten !== undefined) {
        // Some chains committed: only the rest go back to the queue.
        const cause = Object.assign(new Error('deferred write failed in the worker'), { code: m.code });
        p.reject(new PartialFlush(cause, m.unwritten.map((i) => p.audit[i]!), m.touches === true));
      } else p.reject(Object.assign(new Error('deferred write failed in the worker'), { code: m.code }));
    });
    worker.on('error', (err) => this.failed(worker, err));
    worker.on('exit', (code) => this.failed(worker, new Error(`deferred-audit worker exited (code ${code})`)));
    // The worker keeps the process alive only while a batch is on its way: awaiting a reply from
    // an unref'd worker would let the process exit in the middle of a final flush.
    worker.unref();
    for (const [id, p] of this.pending) this.post(id, p);
  }

  private post(id: number, p: InFlight): void {
    const worker = this.worker!;
    worker.ref();
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      if (this.worker !== worker || !this.pending.has(id)) return;
      this.options.log.error({ batch: id, timeoutMs: this.replyTimeoutMs }, 'deferred-audit worker did not answer; restarting it');
      void worker.terminate();
    }, this.replyTimeoutMs);
    p.timer.unref();
    worker.postMessage({ id, key: p.key, audit: p.audit, agents: p.agents, tokens: p.tokens });
  }

  /** The worker errored, exited or hung: its batches go to a new worker, or inline. */
  private failed(worker: Worker, err: Error): void {
    if (this.worker !== worker || this.state === 'closed') return;
    this.worker = null;
    void worker.terminate().catch(() => undefined);
    this.streak++;
    if (this.streak <= this.maxRestarts) {
      this.state = 'restarting';
      this.restarts++;
      const delay = this.backoffMs * 2 ** (this.streak - 1);
      this.options.log.error({ err, restarts: this.restarts, pending: this.pending.size, delayMs: delay }, 'deferred-audit worker failed; restarting it');
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (this.state === 'restarting') this.spawn();
      }, delay);
      // The restart must happen even if nothing else keeps the loop alive: it holds batches.
      if (this.pending.size === 0) this.restartTimer.unref();
      return;
    }
    this.state = 'inline';
    this.options.log.error(
      { err, restarts: this.restarts, pending: this.pending.size },
      'deferred-audit worker keeps failing; writing deferred rows on the main connection from now on',
    );
    this.drainInline();
  }

  private drainInline(): void {
    const batches = [...this.pending.values()];
    this.pending.clear();
    for (const p of batches) {
      if (p.timer !== null) clearTimeout(p.timer);
      this.options.fallback(p.audit, p.agents, p.tokens, p.key).then(p.resolve, p.reject);
    }
  }

  readonly write: DeferredSink = (audit, agents, tokens) => {
    if (this.blocked !== null) return Promise.reject(this.blocked);
    // After close, batches go on the main connection (until the store itself closes).
    if (this.state === 'inline' || this.state === 'closed') return this.options.fallback(audit, agents, tokens);
    return new Promise<void>((resolve, reject) => {
      const id = ++this.seq;
      const p: InFlight = { key: deferredKey(Date.now()), audit, agents, tokens, resolve, reject, timer: null };
      this.pending.set(id, p);
      if (this.state === 'alive') this.post(id, p);
      else this.restartTimer?.ref();
    });
  };

  /** Refuse batches from now on (they stay queued in the writer, counted in /readyz). */
  block(code: string, message: string): void {
    this.blocked = Object.assign(new Error(message), { code });
  }

  health(): SinkHealth {
    return { state: this.state, restarts: this.restarts, pending: this.pending.size };
  }

  /** Test hook: ends the worker as a crash would (its batches must survive). */
  async kill(): Promise<void> {
    await this.worker?.terminate();
  }

  /**
   * Test hook: the worker's next batch hangs it (a busy loop), before its writes or after they
   * committed, as a worker stuck in a system call or a lock would: it answers nothing more.
   */
  hang(when: 'before-commit' | 'after-commit'): void {
    this.worker?.postMessage({ fault: when });
  }

  /**
   * Stops the worker, then writes the batches it still held on the main connection, under their
   * keys (what it committed is not written again). Bounded: a worker that does not stop within
   * 5 s is not awaited further. Batches written after close go on the main connection.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const worker = this.worker;
    this.worker = null;
    this.state = 'closed';
    // Stopped first: a batch it is writing commits or rolls back before the same batch goes inline.
    if (worker !== null) await settlesWithin(worker.terminate().catch(() => undefined), 5_000);
    this.drainInline();
  }
}

/** How long closing lets the worker write what is queued before it is stopped and the rest goes on the main connection. */
export const DEFERRED_CLOSE_MS = 5_000;

/**
 * Closing the deferred writes (Hub.close): the writer flushes what is queued through its sink.
 * With a worker, that is bounded: past `budgetMs` (a worker that hangs would otherwise hold
 * closing for its reply timeouts, minutes), the worker is stopped and the batches it held, and
 * the rest of the queue, are written on the main connection. Rows that still cannot be written
 * are counted in the log by the writer.
 */
export async function closeDeferred(writer: DeferredWriter, sink: WorkerSink | null, log: Logger, budgetMs = DEFERRED_CLOSE_MS): Promise<void> {
  const closing = writer.close();
  if (sink !== null) {
    if (!(await settlesWithin(closing, budgetMs))) {
      log.warn({ budgetMs, pending: sink.health().pending }, 'the deferred-audit worker did not finish in time; writing what it holds on the main connection');
    }
    await sink.close();
  }
  // Bounded as well: a store that stopped answering (PostgreSQL) would hold each of the writer's
  // three attempts until the client's query timeout; a stop must not wait for that.
  if (!(await settlesWithin(closing, budgetMs))) log.error({ budgetMs }, 'deferred audit rows not written before close: the store did not answer in time');
}

export class DeferredWriter {
  private audit: AuditEntry[] = [];
  private agents = new Map<string, number>();
  private tokens = new Map<string, number>();
  private readonly lastTouch = new Map<string, number>();
  /** Authentication failures per source in the current window (repeated failures: S29). */
  private readonly authFailures = new Map<string, { start: number; count: number; flagged: boolean }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  /** Consecutive failed batches: the next retry waits intervalMs · 2^failures (at most 5 s). */
  private failures = 0;
  /** Rows dropped because the queue hit `maxQueued` while the store refused them (logged loudly). */
  private dropped = 0;

  private readonly intervalMs: number;
  private readonly maxBatch: number;
  private readonly touchEveryMs: number;
  private readonly authFailureLimit: number;
  private readonly authWindowMs: number;
  private readonly maxQueued: number;

  constructor(
    /** Where batches go: `inlineSink` (the caller's connection) or a `WorkerSink`. */
    private readonly sink: DeferredSink,
    private readonly log: Logger,
    options: {
      intervalMs?: number;
      maxBatch?: number;
      /** Presence and last-use are kept to this resolution (ms). */
      touchEveryMs?: number;
      /** This many authentication failures from one source within `authWindowMs` is a security event. */
      authFailureLimit?: number;
      authWindowMs?: number;
      /** Most audit rows held while the store refuses them; beyond it the oldest are dropped (with an error log). */
      maxQueued?: number;
    } = {},
  ) {
    this.intervalMs = options.intervalMs ?? 50;
    this.maxBatch = options.maxBatch ?? 1000;
    this.touchEveryMs = options.touchEveryMs ?? 5_000;
    this.authFailureLimit = options.authFailureLimit ?? 10;
    this.authWindowMs = options.authWindowMs ?? 60_000;
    this.maxQueued = options.maxQueued ?? 100_000;
  }

  addAudit(entry: AuditEntry): void {
    this.audit.push(entry);
    if (entry.code === 'unauthenticated') this.countAuthFailure(entry);
    // A full batch goes at once, unless writes are failing: then the backoff timer decides when
    // the next attempt runs (every audited call retrying a failing store would contend with ops).
    if (this.audit.length >= this.maxBatch && this.failures === 0) void this.flush();
    else this.schedule();
  }

  /**
   * Repeated authentication failures from one source (address, else transport) add one
   * SUSPICIOUS_ACTIVITY row of severity high per window.
   */
  private countAuthFailure(entry: AuditEntry): void {
    const source = `${entry.transport}\u0000${entry.address ?? ''}`;
    let w = this.authFailures.get(source);
    if (w === undefined || entry.at - w.start >= this.authWindowMs) {
      if (this.authFailures.size >= 10_000) this.authFailures.clear();
      w = { start: entry.at, count: 0, flagged: false };
      this.authFailures.set(source, w);
    }
    w.count++;
    if (w.count < this.authFailureLimit || w.flagged) return;
    w.flagged = true;
    this.audit.push({
      at: entry.at,
      requestId: entry.requestId,
      projectId: null,
      principal: null,
      role: null,
      op: 'auth',
      target: null,
      outcome: 'denied',
      code: 'repeated_auth_failure',
      params: JSON.stringify({ failures: w.count, window_ms: this.authWindowMs }),
      transport: entry.transport,
      address: entry.address,
      severity: 'high',
      event: 'SUSPICIOUS_ACTIVITY',
    });
    this.log.warn({ transport: entry.transport, address: entry.address, failures: w.count }, 'repeated authentication failures');
  }

  touch(agentId: string, tokenId: string | null, now: number): void {
    const last = this.lastTouch.get(agentId) ?? 0;
    if (now - last < this.touchEveryMs) return;
    this.lastTouch.set(agentId, now);
    this.agents.set(agentId, now);
    if (tokenId !== null) this.tokens.set(tokenId, now);
    this.schedule();
  }

  private schedule(delayMs = this.intervalMs): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, delayMs);
    this.timer.unref();
  }

  /** Rows waiting, rows dropped so far, and whether the last batch failed. */
  health(): { queued: number; dropped: number; failing: boolean } {
    return { queued: this.audit.length, dropped: this.dropped, failing: this.failures > 0 };
  }

  /**
   * Writes the oldest `maxBatch` rows queued now, in one batch (one attempt); the rest follow at
   * once (a backlog after an outage is written in bounded transactions, not one holding the write
   * lock for 100k rows). A batch that fails goes back to the front of the queue and is retried
   * with backoff; it is never dropped unless the queue outgrows `maxQueued`. Settles once the
   * sink has answered (the sinks always answer).
   */
  async flush(): Promise<void> {
    if (this.flushing !== null) await this.flushing;
    if (this.flushing !== null) return this.flushing;
    if (this.audit.length === 0 && this.agents.size === 0 && this.tokens.size === 0) return;
    const audit = this.audit.length <= this.maxBatch ? this.audit : this.audit.splice(0, this.maxBatch);
    const agents = this.agents;
    const tokens = this.tokens;
    if (audit === this.audit) this.audit = [];
    this.agents = new Map();
    this.tokens = new Map();
    this.flushing = this.sink(audit, agents, tokens)
      .then(
        () => {
          if (this.failures > 0) this.log.warn({ failures: this.failures }, 'deferred writes recovered');
          this.failures = 0;
          if (this.audit.length > 0) this.schedule(0);
        },
        (err: unknown) =>
          err instanceof PartialFlush
            ? this.requeue(err, err.audit, err.touches ? agents : new Map(), err.touches ? tokens : new Map())
            : this.requeue(err, audit, agents, tokens),
      )
      .finally(() => {
        this.flushing = null;
      });
    await this.flushing;
  }

  private requeue(err: unknown, audit: AuditEntry[], agents: Map<string, number>, tokens: Map<string, number>): void {
    this.failures++;
    if (this.failures === 1) this.log.error({ err, rows: audit.length }, 'deferred write failed; will retry');
    else this.log.debug({ err, rows: audit.length, failures: this.failures }, 'deferred write failed again');
    this.audit.unshift(...audit); // at most maxBatch rows
    for (const [k, v] of agents) if (!this.agents.has(k)) this.agents.set(k, v);
    for (const [k, v] of tokens) if (!this.tokens.has(k)) this.tokens.set(k, v);
    const over = this.audit.length - this.maxQueued;
    if (over > 0) {
      this.audit.splice(0, over);
      this.dropped += over;
      this.log.error({ dropped: over, total: this.dropped, cap: this.maxQueued }, 'deferred audit queue full: oldest rows dropped');
    }
    this.schedule(Math.min(5_000, this.intervalMs * 2 ** Math.min(this.failures, 10)));
  }

  /** Flushes what is queued (at most 3 failed attempts) and returns; rows still refused are counted in the log. */
  async close(): Promise<void> {
    for (let failed = 0; failed < 3; ) {
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      const before = this.failures;
      await this.flush();
      if (this.audit.length === 0 && this.agents.size === 0 && this.tokens.size === 0) return;
      if (this.failures > before) failed++;
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.audit.length > 0) this.log.error({ rows: this.audit.length }, 'deferred audit rows could not be written before close');
  }
}
