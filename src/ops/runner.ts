import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { CallMeta, Principal } from '../auth/principal.js';
import { audienceKey, type Audience } from '../core/audience.js';
import { BatonError, isBatonError } from '../core/errors.js';
import type { Bus, Mark } from '../events/bus.js';
import type { Config } from '../config.js';
import type { Db, Executor } from '../store/db.js';
import { appendAudits, appendEvents, readChainAhead, type AuditEntry, type NewEvent } from '../store/journal.js';
import { RETRY, type OpContext, type OpDef, type OpServices } from './catalog.js';
import type { DeferredWriter } from './deferred.js';
import { OpRateLimiter, type OpClass } from './ratelimit.js';

/**
 * The one door. Every surface calls `Runner.call`, which for every op does, in order:
 * authenticate (inside the op's transaction when a credential is presented) → rate-limit →
 * authorize → validate → run in a transaction (waiting and retrying if the op asks to) →
 * audit → ring the doorbell.
 */
/** Authenticates a caller inside the op's transaction. */
export type ResolvePrincipal = ((tx: Executor) => Promise<Principal>) & {
  /**
   * The project this credential resolved to last time, if any: only which batch its write joins
   * (store `write(…, project)`); the lock taken is always the resolved principal's project.
   */
  readonly projectHint?: string | undefined;
  /** Starts the credential's lookup in the write transaction the op will run in (db.ts WriteOptions.ahead). */
  readonly lookAhead?: ((tx: Executor) => void) | undefined;
};

type AuditBase = Omit<AuditEntry, 'at' | 'outcome' | 'code' | 'params' | 'target'>;

/** The error an abandoned call ends with: audited, never written (its client is gone). */
export function clientGone(): BatonError {
  return new BatonError('unavailable', 'client went away');
}

/**
 * One call's state across its attempts. parse() fills `input`, `params` and `deadline` once the
 * principal is known; every attempt reads them.
 */
class CallState {
  principal: Principal | null;
  input: unknown = undefined;
  params: string | null = null;
  /** On the monotonic clock: a wall-clock step neither cuts a wait short nor stretches it. */
  deadline = 0;
  /** A validation refusal found before the principal was known, revealed by admit(). */
  invalid: BatonError | null = null;
  invalidParams: string | null = null;
  /** admit() ran: rate limit, authorization and validation passed. */
  admitted = false;
  /** A refusal found in admit() was audited there. */
  audited = false;
  /**
   * The refusal admit() found: a transaction the store runs again (a batch run once more with
   * savepoints, or after a lost connection) must refuse the call the same way, not run its handler.
   */
  refusal: BatonError | null = null;
  /** The attempt running (or last run) is the final one: the handler answers instead of RETRY. */
  final = false;
  /** Work the last attempt started outside the transaction (ctx.outside); the next pause awaits it. */
  outside: Promise<void> | null = null;
  round = 0;
  /** Set by the attempt that ran: what the op touched, and whether it emitted events. */
  target: string | null = null;
  emitted = 0;

  constructor(
    readonly name: string,
    readonly op: OpDef,
    readonly rawInput: unknown,
    readonly who: Principal | ResolvePrincipal,
    readonly meta: CallMeta,
    readonly now: number,
  ) {
    this.principal = typeof who === 'function' ? null : who;
  }

  base(): AuditBase {
    const p = this.principal;
    return {
      requestId: this.meta.requestId,
      projectId: p?.projectId ?? null,
      principal: p?.agentId ?? null,
      role: p?.role ?? null,
      op: this.name,
      transport: this.meta.transport,
      address: this.meta.address ?? null,
    };
  }
}

export class Runner {
  readonly ops: ReadonlyMap<string, OpDef>;
  /** Per-principal, per-op-class rate limits (S25); null when off. */
  private readonly limits: OpRateLimiter | null;
  /** Set by drain(): every wait ends at its next attempt, which runs as the final one. */
  private draining = false;

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

  /**
   * A per-principal rate-limit token of class `cls` for a request answered outside an op (the
   * browser session's login, ops list and view): 0 when granted (or limits are off), else seconds to wait.
   */
  rateLimit(principal: Principal, cls: OpClass, now: number): number {
    const wait = this.limits === null ? 0 : this.limits.takeClass(principal.agentId, cls, now);
    if (wait > 0) this.onRateLimited?.();
    return wait;
  }

  /** Told of each refusal by `rateLimit` (the metrics count them with the ops' own). */
  onRateLimited: (() => void) | null = null;

  /** The ops this principal may call, in catalog order: what its tools/list shows. */
  visibleOps(principal: Principal): OpDef[] {
    return [...this.ops.values()].filter((op) => this.services.roles.allows(principal.role, op.permission));
  }

  /**
   * Ends every wait now and every later one at its first attempt: each answers what its final
   * attempt finds — for a long poll with nothing new, its empty result (a stopping server
   * answers its long polls instead of resetting them). Calls themselves still run.
   */
  drain(): void {
    this.draining = true;
    this.bus.ring();
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Told of every call's end (metrics, src/api/http/metrics.ts): the op (null for an unknown
   * name, so a caller cannot grow a label set), `ok` or the error code, and the duration in ms.
   */
  onCall: ((op: string | null, outcome: string, ms: number) => void) | null = null;

  /** Runs one op (`callOp`), telling `onCall` how it ended. */
  async call(name: string, rawInput: unknown, who: Principal | ResolvePrincipal, meta: CallMeta): Promise<unknown> {
    const observe = this.onCall;
    if (observe === null) return this.callOp(name, rawInput, who, meta);
    const started = performance.now();
    const op = this.ops.has(name) ? name : null;
    try {
      const out = await this.callOp(name, rawInput, who, meta);
      observe(op, 'ok', performance.now() - started);
      return out;
    } catch (err) {
      observe(op, isBatonError(err) ? err.code : 'internal', performance.now() - started);
      throw err;
    }
  }

  /**
   * Runs one op for `who`: a principal already known (stdio, CLI, tools/list), or a resolver that
   * authenticates the caller's credential inside the op's own transaction — one store round
   * (and, on SQLite, one lock cycle) per request, with revocation seen at once, on every attempt
   * of a wait. Steps: parse (no lock) → attempt (authenticate, admit, run) → pause → attempt …
   */
  private async callOp(name: string, rawInput: unknown, who: Principal | ResolvePrincipal, meta: CallMeta): Promise<unknown> {
    const op = this.ops.get(name);
    const now = this.services.clock.now();
    if (op === undefined) {
      const s = new CallState(name, undefined as unknown as OpDef, rawInput, who, meta, now);
      this.refused(s, now, 'invalid', 'not_found');
      throw new BatonError('not_found', `unknown operation ${name}`);
    }
    const s = new CallState(name, op, rawInput, who, meta, now);
    if (s.principal !== null) this.admit(s, s.principal);
    // A caller known only by its credential: validation needs no lock, so it runs before the
    // transaction; its verdict is revealed only once the caller is authenticated and authorized.
    else this.parse(s);
    for (;;) {
      // Only a call that may wait needs a mark (it costs an events-head read while the bus is not
      // listening across processes); a call with no wait left answers on this attempt.
      const mark = op.waitMs !== undefined && s.deadline > this.services.clock.monotonic() ? await this.bus.mark() : undefined;
      const result = await this.attempt(s);
      if (result !== RETRY) return result;
      await this.pause(s, mark);
    }
  }

  /**
   * Validates the input and derives what the attempts need (params summary, the wait's
   * deadline). Throws nothing: a refusal is kept in `s.invalid` for admit() to reveal.
   */
  private parse(s: CallState): void {
    const parsed = s.op.input.safeParse(s.rawInput ?? {});
    if (!parsed.success) {
      s.invalid = validationError(parsed.error);
      return;
    }
    s.input = parsed.data;
    const over = overLimits(s.input, this.services.config);
    if (over !== null) {
      s.invalid = over;
      return;
    }
    s.params = summarize(s.input);
    const wait = s.op.waitMs === undefined ? 0 : Math.max(0, s.op.waitMs(s.input));
    // One bound for every waiting op (S15): no op may be asked to wait longer than waitMaxMs.
    if (wait > this.services.config.waitMaxMs) {
      s.invalid = new BatonError('invalid_input', `invalid input: wait_ms: exceeds the maximum of ${this.services.config.waitMaxMs}`);
      s.invalidParams = s.params;
      return;
    }
    // The surface's cap (MCP clients cut long calls): a shorter wait, never a refusal.
    const capped = s.meta.maxWaitMs === undefined ? wait : Math.min(wait, Math.max(0, s.meta.maxWaitMs));
    s.deadline = this.services.clock.monotonic() + capped;
  }

  /** Rate limit → authorize → reveal validation: once per call, when the principal is first known. */
  private admit(s: CallState, p: Principal): void {
    s.principal = p;
    s.admitted = true;
    const { op, meta, now } = s;
    // Rate limit: after authentication, before validation; the local operator (CLI) is not limited.
    if (this.limits !== null && meta.transport !== 'cli') {
      const wait = this.limits.take(p.agentId, op, now);
      if (wait > 0) throw this.refusal(s, 'limited', new BatonError('rate_limited', 'too many requests; retry later', { retry_after_s: wait }));
    }
    // Authorization before validation: a role that may not call an op learns nothing about
    // what the op would accept (and the catalog walk can test every op with any input).
    if (!this.services.roles.allows(p.role, op.permission)) {
      throw this.refusal(s, 'denied', new BatonError('forbidden', `role ${p.role} may not call ${s.name}`));
    }
    if (s.input === undefined && s.invalid === null) this.parse(s);
    if (s.invalid !== null) {
      throw this.refusal(s, 'invalid', s.invalid, s.invalidParams);
    }
    this.deferred.touch(p.agentId, p.tokenId, now);
  }

  /** One attempt in its own transaction: the op's result, or RETRY when a wait should go on. */
  private async attempt(s: CallState): Promise<unknown> {
    const { op } = s;
    const started = this.services.clock.now();
    s.target = null;
    s.emitted = 0;
    try {
      // A caller that went away gets no further attempt: nothing is claimed or marked for it.
      if (s.meta.signal?.aborted === true) throw clientGone();
      // A write declares its lock itself (run(): its project's, once the caller is known).
      const result =
        op.kind === 'write'
          ? await this.db.write(
              (tx) => this.run(s, tx, started),
              'declared',
              op.permission === 'token.admin' ? undefined : projectHint(s),
              { ahead: (tx) => this.ahead(s, tx), parallel: op.parallel === true },
            )
          : await this.db.read((tx) => this.run(s, tx, started));
      s.round++;
      if (s.emitted > 0) this.bus.ring();
      if (result === RETRY) {
        if (!s.final || s.outside !== null) return RETRY;
        this.deferred.addAudit({ ...s.base(), at: started, target: s.target, outcome: 'ok', code: 'empty', params: s.params });
        return op.output.parse(emptyResult(op));
      }
      if (op.kind === 'read') {
        this.deferred.addAudit({ ...s.base(), at: started, target: s.target, outcome: 'ok', code: null, params: s.params });
      }
      if (this.checkOutputs) checkOutput(op, result);
      return result;
    } catch (err) {
      throw this.failure(s, err, started);
    }
  }

  /**
   * Reads a write starts ahead in its transaction (db.ts WriteOptions.ahead; only in a batch formed
   * for the project it hinted): the caller's key, and the head of that project's audit chain
   * (after its lock), which the op's audit row will follow.
   */
  private ahead(s: CallState, tx: Executor): void {
    if (typeof s.who === 'function') s.who.lookAhead?.(tx);
    const project = projectHint(s);
    // After the turn's keys statement (sent in a microtask queued before this one): the keys are
    // read before the project's lock is waited for, and the batch holds the lock one round trip
    // less (another instance's batch of the project waits for it meanwhile).
    if (project !== undefined) queueMicrotask(() => readChainAhead(tx, project, this.services.auditKey));
  }

  /** Inside the attempt's transaction: authenticate (again, on every round), admit, run the handler, audit. */
  private async run(s: CallState, tx: Executor, started: number): Promise<unknown> {
    const { op, who, meta } = s;
    if (typeof who === 'function') {
      // A credential is checked again on every round of a wait: a key revoked meanwhile stops it.
      const p = await who(tx);
      if (!s.admitted) this.admit(s, p);
      else if (s.refusal !== null) throw s.refusal;
      else s.principal = p;
    }
    const p = s.principal!;
    // Before the handler reads what it will change: the caller's project's writer lock (on
    // PostgreSQL its project's writers take turns, other projects' run beside it; docs/
    // ARCHITECTURE.md "Writers on PostgreSQL"). Token ops reach other projects: the server's.
    if (op.kind === 'write') await tx.lock(op.permission === 'token.admin' ? 'server' : { project: p.projectId });
    s.final = this.draining || this.services.clock.monotonic() >= s.deadline;
    const waits = op.waitMs !== undefined;
    // Appended when the handler returns, with the op's audit row (one statement on PostgreSQL);
    // nothing the handler reads needs them in the table before then.
    const events: NewEvent[] = [];
    const eventOf = (type: string, subject: string | null, data?: Record<string, unknown>, audience?: Audience): NewEvent => {
      s.emitted++;
      const body = data === undefined ? null : JSON.stringify(data);
      return { projectId: p.projectId, type, subject, actor: p.agentId, data: body, createdAt: started, audience: audience === undefined ? 'project' : audienceKey(audience) };
    };
    // Checked again under the lock: a claim (or read mark) is committed only for a caller still there.
    if (waits && meta.signal?.aborted === true) throw clientGone();
    const ctx: OpContext = {
      principal: p,
      tx,
      now: started,
      requestId: meta.requestId,
      services: this.services,
      final: s.final,
      emit: async (type, subject, data, audience) => {
        events.push(eventOf(type, subject, data, audience));
      },
      emitNow: async (type, subject, data) => {
        await appendEvents(tx, [eventOf(type, subject, data)]);
      },
      target: (id) => {
        s.target = id;
      },
      outside: (work) => {
        s.outside = work.then(
          () => undefined,
          () => undefined,
        );
      },
    };
    const out = await op.handler(ctx, s.input);
    // The caller left while the handler ran: throwing rolls its claim back.
    if (waits && meta.signal?.aborted === true) throw clientGone();
    if (out !== RETRY && op.kind === 'write') {
      const entry: AuditEntry = { ...s.base(), at: started, target: s.target, outcome: 'ok', code: null, params: s.params };
      await appendAudits(tx, [entry], this.services.auditKey, events);
    } else await appendEvents(tx, events);
    return out;
  }

  /**
   * Between attempts of a wait: until the doorbell rings, the caller leaves, the hub drains, or
   * the re-check interval (waitRecheckMs; 0: the doorbell only) or the deadline comes.
   */
  private async pause(s: CallState, mark: Mark | undefined): Promise<void> {
    if (s.outside !== null) {
      // The op's own work (bounded by the op) decides when the next attempt runs, or the caller leaving.
      const work = s.outside;
      s.outside = null;
      await new Promise<void>((resolve) => {
        const signal = s.meta.signal;
        if (signal?.aborted === true) return resolve();
        // Removed when the work settles: a call that hands work out many times (a chunked walk)
        // must not pile listeners on its request's signal.
        const onAbort = (): void => resolve();
        signal?.addEventListener('abort', onAbort, { once: true });
        void work.then(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
      return;
    }
    const left = s.deadline - this.services.clock.monotonic();
    if (left <= 0 || this.draining) return;
    const recheck = this.services.config.waitRecheckMs;
    await this.bus.wait(recheck > 0 ? Math.min(left, recheck) : left, s.meta.signal, mark);
  }

  /** Any failure of an attempt → the BatonError the caller gets, audited once. */
  private failure(s: CallState, err: unknown, at: number): BatonError {
    // What the input was is audited only for a caller that was admitted (as before parsing moved
    // ahead of authentication).
    const params = s.admitted ? s.params : null;
    if (isBatonError(err)) {
      // Refusals found in admit() were audited there.
      if (!s.audited) this.refused(s, at, outcomeOf(err.code), err.code, params, s.target);
      return err;
    }
    this.log.error({ err, requestId: s.meta.requestId, op: s.name }, 'operation failed');
    this.refused(s, at, 'error', 'internal', params, s.target);
    return new BatonError('internal', 'internal error');
  }

  /** Audits a refusal found in admit() and returns its error. */
  private refusal(s: CallState, outcome: AuditEntry['outcome'], err: BatonError, params: string | null = null): BatonError {
    this.refused(s, s.now, outcome, err.code, params);
    s.audited = true;
    s.refusal = err;
    return err;
  }

  private refused(
    s: CallState,
    at: number,
    outcome: AuditEntry['outcome'],
    code: string,
    params: string | null = null,
    target: string | null = null,
  ): void {
    this.deferred.addAudit({ ...s.base(), at, target, outcome, code, params });
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

/** The project a call's write will lock, when known before its transaction (see ResolvePrincipal.projectHint). */
function projectHint(s: CallState): string | undefined {
  if (s.principal !== null) return s.principal.projectId;
  return typeof s.who === 'function' ? s.who.projectHint : undefined;
}
