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
export class DeferredWriter {
  private audit: AuditEntry[] = [];
  private agents = new Map<string, number>();
  private tokens = new Map<string, number>();
  private readonly lastTouch = new Map<string, number>();
  /** Authentication failures per source in the current window (repeated failures: S29). */
  private readonly authFailures = new Map<string, { start: number; count: number; flagged: boolean }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly intervalMs = 50,
    private readonly maxBatch = 1000,
    /** Presence and last-use are kept to this resolution (ms). */
    private readonly touchEveryMs = 5_000,
    /** This many authentication failures from one source within `authWindowMs` is a security event. */
    private readonly authFailureLimit = 10,
    private readonly authWindowMs = 60_000,
  ) {}

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
    this.flushing = this.db
      .write(async (ex) => {
        await appendAudits(ex, audit);
        await touchAgents(ex, agents);
        await touchTokens(ex, tokens);
      })
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
