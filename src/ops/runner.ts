import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { CallMeta, Principal } from '../auth/principal.js';
import { audienceKey } from '../core/audience.js';
import { BatonError, isBatonError } from '../core/errors.js';
import type { Bus } from '../events/bus.js';
import type { Config } from '../config.js';
import type { Db, Executor } from '../store/db.js';
import { appendAudit, appendEvent, type AuditEntry } from '../store/journal.js';
import { RETRY, type OpContext, type OpDef, type OpServices } from './catalog.js';
import type { DeferredWriter } from './deferred.js';
import { OpRateLimiter } from './ratelimit.js';

/**
 * The one door. Every surface calls `Runner.call`, which for every op does, in order:
 * authenticate (inside the op's transaction when a credential is presented) → rate-limit →
 * authorize → validate → run in a transaction (waiting and retrying if the op asks to) →
 * audit → ring the doorbell.
 */
/** Authenticates a caller inside the op's transaction. */
export type ResolvePrincipal = (tx: Executor) => Promise<Principal>;

export class Runner {
  readonly ops: ReadonlyMap<string, OpDef>;
  /** Per-principal, per-op-class rate limits (S25); null when off. */
  private readonly limits: OpRateLimiter | null;

  constructor(
    ops: readonly OpDef[],
    private readonly db: Db,
    private readonly bus: Bus,
    private readonly services: OpServices,
    private readonly deferred: DeferredWriter,
    private readonly log: Logger,
    /** Check every output against its schema (tests turn this on; it costs a parse per call). */
    private readonly checkOutputs = false,
  ) {
    this.ops = new Map(ops.map((op) => [op.name, op]));
    this.limits = OpRateLimiter.fromConfig(services.config);
  }

  /** The ops this principal may call, in catalog order: what its tools/list shows. */
  visibleOps(principal: Principal): OpDef[] {
    return [...this.ops.values()].filter((op) => this.services.roles.allows(principal.role, op.permission));
  }

  /**
   * Runs one op for `who`: a principal already known (stdio, CLI, tools/list), or a resolver that
   * authenticates the caller's credential inside the op's own transaction — one store round
   * (and, on SQLite, one lock cycle) per request, with revocation seen at once.
   */
  async call(name: string, rawInput: unknown, who: Principal | ResolvePrincipal, meta: CallMeta): Promise<unknown> {
    const op = this.ops.get(name);
    const now = this.services.clock.now();
    let principal: Principal | null = typeof who === 'function' ? null : who;
    const base = (): Omit<AuditEntry, 'at' | 'outcome' | 'code' | 'params' | 'target'> => ({
      requestId: meta.requestId,
      projectId: principal?.projectId ?? null,
      principal: principal?.agentId ?? null,
      role: principal?.role ?? null,
      op: name,
      transport: meta.transport,
      address: meta.address ?? null,
    });
    if (op === undefined) {
      this.refused(base(), now, 'invalid', 'not_found', null);
      throw new BatonError('not_found', `unknown operation ${name}`);
    }

    let input: unknown;
    let params: string | null = null;
    let deadline = now;
    let audited = false;
    const prepare = (p: Principal): void => {
      principal = p;
      if (input !== undefined) return;
      // Rate limit: after authentication, before validation; the local operator (CLI) is not limited.
      if (this.limits !== null && meta.transport !== 'cli') {
        const wait = this.limits.take(p.agentId, op, now);
        if (wait > 0) {
          this.refused(base(), now, 'limited', 'rate_limited', null);
          audited = true;
          throw new BatonError('rate_limited', 'too many requests; retry later', { retry_after_s: wait });
        }
      }
      // Authorization before validation: a role that may not call an op learns nothing about
      // what the op would accept (and the catalog walk can test every op with any input).
      if (!this.services.roles.allows(p.role, op.permission)) {
        this.refused(base(), now, 'denied', 'forbidden', null);
        audited = true;
        throw new BatonError('forbidden', `role ${p.role} may not call ${name}`);
      }
      const parsed = op.input.safeParse(rawInput ?? {});
      if (!parsed.success) {
        const err = validationError(parsed.error);
        this.refused(base(), now, 'invalid', err.code, null);
        audited = true;
        throw err;
      }
      input = parsed.data;
      const over = overLimits(input, this.services.config);
      if (over !== null) {
        this.refused(base(), now, 'invalid', over.code, null);
        audited = true;
        throw over;
      }
      params = summarize(input);
      const wait = op.waitMs === undefined ? 0 : Math.max(0, op.waitMs(input));
      // One bound for every waiting op (S15): no op may be asked to wait longer than waitMaxMs.
      if (wait > this.services.config.waitMaxMs) {
        this.refused(base(), now, 'invalid', 'invalid_input', params);
        audited = true;
        throw new BatonError('invalid_input', `invalid input: wait_ms: exceeds the maximum of ${this.services.config.waitMaxMs}`);
      }
      deadline = now + wait;
      this.deferred.touch(p.agentId, p.tokenId, now);
    };
    if (principal !== null) prepare(principal);

    for (let round = 0; ; round++) {
      // Taken before each attempt of an op that may wait, so a change committed between "nothing
      // yet" and the start of the wait still wakes it.
      const mark = op.waitMs !== undefined ? await this.bus.mark() : undefined;
      let emitted = 0;
      let target: string | null = null;
      const started = this.services.clock.now();
      let final = started >= deadline;
      try {
        const run = op.kind === 'write' ? this.db.write.bind(this.db) : this.db.read.bind(this.db);
        const result = await run(async (tx) => {
          // A credential is checked again on every round of a wait: a key revoked meanwhile stops it.
          const p = typeof who === 'function' ? await who(tx) : who;
          if (round === 0 || typeof who === 'function') prepare(p);
          final = started >= deadline;
          const ctx: OpContext = {
            principal: p,
            tx,
            now: started,
            requestId: meta.requestId,
            services: this.services,
            final,
            emit: async (type, subject, data, audience) => {
              emitted++;
              const body = data === undefined ? null : JSON.stringify(data);
              const to = audience === undefined ? 'project' : audienceKey(audience);
              await appendEvent(tx, p.projectId, type, subject, p.agentId, body, started, to);
            },
            target: (id) => {
              target = id;
            },
          };
          const out = await op.handler(ctx, input);
          if (out !== RETRY && op.kind === 'write') {
            await appendAudit(tx, { ...base(), at: started, target, outcome: 'ok', code: null, params }, this.services.auditKey);
          }
          return out;
        });
        if (emitted > 0) this.bus.ring();
        if (result === RETRY) {
          const left = deadline - this.services.clock.now();
          if (!final && meta.signal?.aborted !== true) {
            // Once the deadline has passed, one more attempt runs with ctx.final set.
            if (left > 0) await this.bus.wait(Math.min(left, 1_000), meta.signal, mark);
            continue;
          }
          this.deferred.addAudit({ ...base(), at: started, target, outcome: 'ok', code: 'empty', params });
          return op.output.parse(emptyResult(op));
        }
        if (op.kind === 'read') {
          this.deferred.addAudit({ ...base(), at: started, target, outcome: 'ok', code: null, params });
        }
        if (this.checkOutputs) checkOutput(op, result);
        return result;
      } catch (err) {
        if (isBatonError(err)) {
          // Refusals found in prepare() were audited there.
          if (!audited) this.refused(base(), started, outcomeOf(err.code), err.code, params, target);
          throw err;
        }
        if (isBusy(err)) {
          // Another process held the write lock past busy_timeout: retryable, not a fault.
          this.log.warn({ requestId: meta.requestId, op: name }, 'store busy');
          this.refused(base(), started, 'error', 'unavailable', params, target);
          throw new BatonError('unavailable', 'the store is busy; retry shortly');
        }
        this.log.error({ err, requestId: meta.requestId, op: name }, 'operation failed');
        this.refused(base(), started, 'error', 'internal', params, target);
        throw new BatonError('internal', 'internal error');
      }
    }
  }

  private refused(
    base: Omit<AuditEntry, 'at' | 'outcome' | 'code' | 'params' | 'target'>,
    at: number,
    outcome: AuditEntry['outcome'],
    code: string,
    params: string | null,
    target: string | null = null,
  ): void {
    this.deferred.addAudit({ ...base, at, target, outcome, code, params });
  }
}

/**
 * The configured limits over any op's input (S15): strings, arrays, page sizes (`limit` fields).
 * The schemas hold each field's own tighter limit; these let an operator lower them all.
 */
function overLimits(input: unknown, c: Pick<Config, 'maxStringChars' | 'maxArrayItems' | 'maxPageSize'>): BatonError | null {
  const walk = (v: unknown, path: string): BatonError | null => {
    if (typeof v === 'string') {
      return v.length > c.maxStringChars ? new BatonError('too_large', `invalid input: ${path}: longer than ${c.maxStringChars} characters`) : null;
    }
    if (Array.isArray(v)) {
      if (v.length > c.maxArrayItems) return new BatonError('too_large', `invalid input: ${path}: more than ${c.maxArrayItems} items`);
      for (let i = 0; i < v.length; i++) {
        const e = walk(v[i], `${path}.${i}`);
        if (e !== null) return e;
      }
      return null;
    }
    if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'limit' && typeof x === 'number' && x > c.maxPageSize) {
          return new BatonError('invalid_input', `invalid input: ${path === '' ? '' : `${path}.`}limit: the largest page is ${c.maxPageSize}`);
        }
        const e = walk(x, path === '' ? k : `${path}.${k}`);
        if (e !== null) return e;
      }
    }
    return null;
  };
  return walk(input, '');
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

function outcomeOf(code: string): AuditEntry['outcome'] {
  if (code === 'invalid_input' || code === 'too_large') return 'invalid';
  if (code === 'rate_limited') return 'limited';
  if (code === 'internal' || code === 'unavailable') return 'error';
  return 'denied';
}

function emptyResult(op: OpDef): unknown {
  // A waiting op that timed out answers its "nothing" shape, which each waiting op defines as { task: null }-like.
  const shape = (op.output as unknown as { shape?: Record<string, unknown> }).shape ?? {};
  return Object.fromEntries(Object.keys(shape).map((k) => [k, null]));
}

function checkOutput(op: OpDef, result: unknown): void {
  const r = op.output.safeParse(result);
  if (!r.success) throw new Error(`output of ${op.name} does not match its schema: ${r.error.message}`);
}

/** Zod issues → one client-facing message naming the fields; `too_large` when a limit was exceeded. */
export function validationError(error: z.ZodError): BatonError {
  const issues = error.issues.slice(0, 5).map((i) => {
    const path = i.path.length > 0 ? i.path.map(String).join('.') : '(input)';
    const message = i.code === 'invalid_type' && i.message.endsWith('received undefined') ? 'required' : i.message;
    return `${path}: ${message}`;
  });
  const more = error.issues.length > 5 ? ` (+${error.issues.length - 5} more)` : '';
  // Sizes over a limit (strings, arrays, objects) are `too_large`; a number out of range is plain invalid.
  const tooBig = error.issues.some((i) => i.code === 'too_big' && i.origin !== 'number' && i.origin !== 'int' && i.origin !== 'bigint');
  return new BatonError(tooBig ? 'too_large' : 'invalid_input', `invalid input: ${issues.join('; ')}${more}`, {
    fields: error.issues.slice(0, 20).map((i) => i.path.map(String).join('.')),
  });
}

/**
 * What the audit keeps of an op's input: ids, numbers and booleans as they are;
 * every other string as its length and a short hash; arrays and objects by size. Never content.
 */
export function summarize(input: unknown): string {
  const out: Record<string, unknown> = {};
  if (typeof input === 'object' && input !== null) {
    for (const [k, v] of Object.entries(input)) out[k] = summarizeValue(v);
  }
  return JSON.stringify(out);
}

function summarizeValue(v: unknown): unknown {
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return v;
  if (typeof v === 'string') {
    if (/^[a-z]{3}_[a-z2-7]{26}$/.test(v)) return v;
    return { len: v.length, sha256: createHash('sha256').update(v).digest('hex').slice(0, 12) };
  }
  if (Array.isArray(v)) return { items: v.length };
  if (typeof v === 'object') return { keys: Object.keys(v as object).length };
  return typeof v;
}
