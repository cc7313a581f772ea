import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { touchAgents, touchTokens } from '../store/directory.js';
import { appendAudits, type AuditEntry } from '../store/journal.js';

/**
 * Writes that need not share the caller's transaction, batched into one transaction every
 * `intervalMs`: audit rows of reads and of refused calls, agent presence, token last use.
 * A read then costs no write transaction of its own (measured: a write transaction per read
 * roughly halves read throughput). Writing ops audit inside their own transaction instead.
 */
/** Where a batch goes: written on this connection, or handed to a worker thread (WorkerSink). */
export type DeferredSink = (audit: AuditEntry[], agents: Map<string, number>, tokens: Map<string, number>) => Promise<void>;

/**
 * Hands batches to a worker thread with its own connection to the same database file
 * (`deferred-worker.ts`); each batch's promise settles when the worker has committed it.
 */
/** Writes batches on the given connection, in one write transaction each. */
export function inlineSink(db: Db, auditKey: Buffer): DeferredSink {
  return (audit, agents, tokens) =>
    db.write(async (ex) => {
      await appendAudits(ex, audit, auditKey);
      await touchAgents(ex, agents);
      await touchTokens(ex, tokens);
    });
}

export class WorkerSink {
  private readonly worker: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();

  constructor(file: string, busyTimeoutMs: number, auditKey: Buffer) {
    this.worker = new Worker(new URL('./deferred-worker.js', import.meta.url), {
      workerData: { file, busyTimeoutMs, auditKey },
    });
    this.worker.on('message', (m: { id: number; ok: boolean; code?: string }) => {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.worker.unref();
      if (m.ok) p?.resolve();
      else p?.reject(Object.assign(new Error('deferred write failed in the worker'), { code: m.code }));
    });
    this.worker.on('error', (err) => {
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
    // The worker keeps the process alive only while a batch is on its way: awaiting a reply from
    // an unref'd worker would let the process exit in the middle of a final flush.
    this.worker.unref();
  }

  readonly write: DeferredSink = (audit, agents, tokens) =>
    new Promise<void>((resolve, reject) => {
      const id = ++this.seq;
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ id, audit, agents, tokens });
    });

  async close(): Promise<void> {
    await this.worker.terminate();
  }
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

  private readonly intervalMs: number;
  private readonly maxBatch: number;
  private readonly touchEveryMs: number;
  private readonly authFailureLimit: number;
  private readonly authWindowMs: number;

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
    } = {},
  ) {
    this.intervalMs = options.intervalMs ?? 50;
    this.maxBatch = options.maxBatch ?? 1000;
    this.touchEveryMs = options.touchEveryMs ?? 5_000;
    this.authFailureLimit = options.authFailureLimit ?? 10;
    this.authWindowMs = options.authWindowMs ?? 60_000;
  }

  addAudit(entry: AuditEntry): void {
    this.audit.push(entry);
    if (entry.code === 'unauthenticated') this.countAuthFailure(entry);
    if (this.audit.length >= this.maxBatch) void this.flush();
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

  private schedule(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.intervalMs);
    this.timer.unref();
  }

  async flush(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
    if (this.audit.length === 0 && this.agents.size === 0 && this.tokens.size === 0) return;
    const audit = this.audit;
    const agents = this.agents;
    const tokens = this.tokens;
    this.audit = [];
    this.agents = new Map();
    this.tokens = new Map();
    this.flushing = this.sink(audit, agents, tokens)
      .catch((err: unknown) => {
        this.log.error({ err, rows: audit.length }, 'deferred write failed');
      })
      .finally(() => {
        this.flushing = null;
      });
    await this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
  }
}
