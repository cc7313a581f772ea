import type { Logger } from 'pino';
import type { Db } from '../store/db.js';
import { touchAgents, touchTokens } from '../store/directory.js';
import { appendAudit, type AuditEntry } from '../store/journal.js';

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
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly intervalMs = 50,
    private readonly maxBatch = 1000,
    /** Presence and last-use are kept to this resolution (ms). */
    private readonly touchEveryMs = 5_000,
  ) {}

  addAudit(entry: AuditEntry): void {
    this.audit.push(entry);
    if (this.audit.length >= this.maxBatch) void this.flush();
    else this.schedule();
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
        for (const a of audit) await appendAudit(ex, a);
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
