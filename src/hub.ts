import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { hashKey, generateKey, keyPrefix, looksLikeKey } from './auth/keys.js';
import { looksLikeJwt, type AccessClaims, type Credential } from './auth/jwt.js';
import { namespacedName, type ExternalIdentity } from './auth/external.js';
import { AuthServices, registerAuthServices } from './auth/service.js';
import { accessFamilyLive } from './auth/refresh.js';
import { keyByHash, keyById, keysByHashes, type KeyForAuth } from './store/auth.js';
import type { CallMeta, Principal } from './auth/principal.js';
import type { Secrets } from './auth/secrets.js';
import type { Config } from './config.js';
import type { Clock } from './core/clock.js';
import { settlesWithin } from './core/time.js';
import { CLOCK_OFFSET_WARN_MS, SyncedClock, type ClockSyncStatus } from './core/synced-clock.js';
import { hostClock } from './os/machine-clock.js';
import { sampleServerClock } from './store/clock-sync.js';
import type { Seal } from './core/cursor.js';
import { BatonError } from './core/errors.js';
import { storeFailureKind } from './store/faults.js';
import { newId } from './core/ids.js';
import { Roles } from './core/roles.js';
import { Bus } from './events/bus.js';
import { createLogger } from './log.js';
import { DeferredWriter, WorkerSink, closeDeferred, inlineSink, type SinkHealth } from './ops/deferred.js';
import { DataDirWatch, STORE_MARKER, checkDataDir, type DataDirState } from './os/datadir.js';
import { CATALOG } from './ops/index.js';
import { Runner, type ResolvePrincipal } from './ops/runner.js';
import { clockSteps, sweepLeases, wallSteps } from './ops/tasks.js';
import type { Db, Executor, TxMemo, WriteMode, WriteOptions } from './store/db.js';
import { agentByName, createAgent, ensureAgent, ensureProject, externalAgent, insertToken, linkExternal, projectByName } from './store/directory.js';
import { appendEvent, auditKeyFrom, legacyHeadUnkeyed, sealLegacyHead, sweepAudit, verifyAudit, type AuditVerdict } from './store/journal.js';
import { MIGRATIONS } from './store/migrations.js';
import { LATEST_MIGRATION, schemaVersion } from './store/health.js';
import { circuitOf, type CircuitState } from './store/breaker.js';
import { openStore, storeConfigOf } from './store/open.js';
import { anyToken } from './store/auth.js';
import { expiredLeases, extendLeasesAfterStep } from './store/tasks.js';
import { sweepLocks } from './store/locks.js';
import { pruneEvents, purgeMessages, purgeTasks } from './store/retention.js';
import { sweepMemory } from './store/memory.js';
import { sweepSessions } from './store/sessions.js';
import { keyTools } from './store/tiers.js';
import { isTier, type Tier } from './core/tiers.js';
import { lockReleasedEvent } from './ops/locks.js';

export const DEFAULT_PROJECT = 'default';

/** The longest pause of retention after a chunk (hub.prune: as long as the chunk took). */
const PRUNE_PAUSE_MAX_MS = 2_000;

/** A key's row read ahead in a write transaction (Hub.resolver lookAhead), and which transaction: its memo. */
interface EarlyKey {
  readonly memo: TxMemo;
  readonly row: Promise<KeyForAuth | undefined>;
}

/**
 * The keys one write transaction reads ahead (Hub.resolver lookAhead): every key asked for in
 * the same turn (the store starts a batch's reads ahead one op after the other) is read by one
 * statement, sent once that turn's synchronous part is done.
 */
class KeysAhead {
  private readonly rows = new Map<string, Promise<KeyForAuth | undefined>>();
  private readonly settle = new Map<string, (row: Promise<KeyForAuth | undefined>) => void>();

  constructor(ex: Executor, done: () => void) {
    queueMicrotask(() => {
      done();
      const found = keysByHashes(ex, [...this.settle.keys()]);
      for (const [hash, settle] of this.settle) settle(found.then((rows) => rows.find((r) => r.key_hash === hash)));
    });
  }

  row(hash: string): Promise<KeyForAuth | undefined> {
    let row = this.rows.get(hash);
    if (row === undefined) {
      row = new Promise((resolve) => this.settle.set(hash, resolve));
      row.catch(() => undefined); // observed when the resolver runs, or dropped with its transaction
      this.rows.set(hash, row);
    }
    return row;
  }
}

const keysAhead = new WeakMap<TxMemo, KeysAhead>();

/** The row of the key with this hash, read ahead in the transaction whose memo this is. */
function keyAhead(ex: Executor, memo: TxMemo, hash: string): Promise<KeyForAuth | undefined> {
  let ahead = keysAhead.get(memo);
  if (ahead === undefined) {
    ahead = new KeysAhead(ex, () => keysAhead.delete(memo));
    keysAhead.set(memo, ahead);
  }
  return ahead.row(hash);
}

export interface HubOptions {
  clock?: Clock;
  log?: Logger;
  /** Validate every op output against its schema (tests). */
  checkOutputs?: boolean;
  /** Run the periodic lease sweeper (servers do; one-shot CLI commands don't). */
  sweeper?: boolean;
  /** Write deferred audit rows on a worker thread (`baton serve`). */
  deferredWorker?: boolean;
  /**
   * On PostgreSQL, use the database server's clock (core/synced-clock.ts). Default: on when no
   * clock is given (tests that move a ManualClock by hand keep theirs).
   */
  clockSync?: boolean;
}

/** How often an instance on PostgreSQL re-reads the database server's clock (ms). */
export const CLOCK_SYNC_INTERVAL_MS = 30_000;

/**
 * The composition root: config → data dir and secrets → store → events → ops. Surfaces
 * (MCP stdio, HTTP, CLI) hold a Hub and reach the store only through `hub.runner`.
 */
export class Hub {
  /** Set on the very first start: the admin key, to be shown once and never again. */
  firstStartKey: string | null = null;
  /** The deferred writer's worker thread, when it has one. */
  private workerSink: WorkerSink | null = null;
  /** Set by a graceful stop (Runner.drain): /readyz answers 503 so balancers send no new work. */
  get draining(): boolean {
    return this.runner.isDraining;
  }
  /** Watches the data dir and database file for removal or replacement (then writes are refused). */
  private dataWatch: DataDirWatch | null = null;
  /** Keys the audit hash chain. */
  private auditKey: Buffer = Buffer.alloc(0);
  private sweepTimer: NodeJS.Timeout | null = null;
  /** The database server's clock, when the hub runs on it (PostgreSQL), and its resync timer. */
  private synced: SyncedClock | null = null;
  private clockTimer: NodeJS.Timeout | null = null;
  /** The retention run in progress, if any; `closing` stops it between chunks (and ends its pause). */
  private pruning: Promise<void> | null = null;
  private closing = false;
  private readonly pauses = new Set<() => void>();
  private readonly agentIds = new Map<string, string>();
  private readonly requestPrefix = randomBytes(6).toString('base64url');
  private requestSeq = 0;
  /** key → its keyed hash (an HMAC per request was measurable; the hash alone authorizes nothing). */
  private readonly keyHashes = new Map<string, string>();
  /** Credential → the project it resolved to last: a batching hint for PostgreSQL writes, never trusted (runner.ts projectHint). */
  private readonly projectHints = new Map<string, string>();
  /** Authentication services (S2–S6): access tokens, external issuer, throttle, address binding. */
  private auth!: AuthServices;

  private constructor(
    readonly config: Config,
    readonly db: Db,
    readonly bus: Bus,
    readonly runner: Runner,
    readonly deferred: DeferredWriter,
    readonly roles: Roles,
    readonly clock: Clock,
    readonly log: Logger,
    private readonly secrets: Secrets,
  ) {}

  static async open(config: Config, options: HubOptions = {}): Promise<Hub> {
    const log = options.log ?? createLogger(config.logLevel);
    const local = options.clock ?? hostClock;
    const dataDir = resolve(config.dataDir);
    // Before anything is created: a foreign or empty database file, a read-only dir (datadir.ts).
    await checkDataDir(dataDir);
    // --- data protection (S31/S32/S36): file modes, secret sources, production checks, at-rest cipher ---
    const { openDataProtection } = await import('./security/production.js');
    const { secrets, cipher } = openDataProtection(config, dataDir, log);
    // --- end data protection ---
    prepareDataDir(dataDir, log);
    const db = await openStore({
      ...storeConfigOf(config, dataDir),
      // The operator's record of a storage fault; the driver's message names no SQL values.
      onFault: (err, fault) => log.error({ code: fault.code, detail: fault.message, at: fault.at }, 'storage fault'),
      onCircuit: (c) =>
        c.state === 'open' ? log.error({ reason: c.reason, failures: c.failures }, 'store circuit open: refusing calls until the store answers') : log.warn('store circuit closed: the store answers again'),
    });
    const auditKey = auditKeyFrom(secrets.keyPepper);
    try {
      await db.migrate(MIGRATIONS, local.now());
      // Since migration 14 nothing appends to the legacy audit segment, so its head, unkeyed when
      // nothing was appended after migration 10, is keyed here (journal.ts sealLegacyHead). One
      // read when there is nothing to do.
      if (await db.read((ex) => legacyHeadUnkeyed(ex))) await db.write((ex) => sealLegacyHead(ex, auditKey));
    } catch (err) {
      await db.close().catch(() => undefined);
      throw err;
    }
    if (db.profile.name === 'postgres') markPostgresHub(dataDir, config.databaseSchema, log);
    // Several instances on one PostgreSQL compare each other's lease times: one clock for all.
    const synced = db.profile.name === 'postgres' && (options.clockSync ?? options.clock === undefined) ? new SyncedClock(local) : null;
    if (synced !== null) await syncClock(db, synced, log, true);
    const clock: Clock = synced ?? local;
    const bus = new Bus(db);
    const roles = new Roles(config.roles);
    // Servers write deferred audit rows on a worker thread (runs from the built package only).
    // The worker has its own SQLite connection (a second writer beside the hub's, in WAL). On
    // PostgreSQL the pool already writes concurrently: audit batches go inline.
    const sink =
      options.deferredWorker === true && db.profile.name === 'sqlite'
        ? new WorkerSink({ file: join(dataDir, 'baton.db'), busyTimeoutMs: config.busyTimeoutMs, auditKey, durability: config.durability, fallback: inlineSink(db, auditKey), log })
        : null;
    const deferred = new DeferredWriter(sink?.write ?? inlineSink(db, auditKey), log, {
      authFailureLimit: config.auditAuthFailureLimit,
    });
    const runner = new Runner(
      CATALOG,
      db,
      bus,
      { config, clock, roles, keyPepper: secrets.keyPepper, auditKey, cipher }, // cipher: data protection (S32)
      deferred,
      log,
      options.checkOutputs ?? false,
    );
    const hub = new Hub(config, db, bus, runner, deferred, roles, clock, log, secrets);
    hub.workerSink = sink;
    hub.auditKey = auditKey;
    if (synced !== null) hub.startClockSync(synced);
    // The watch guards the SQLite file in the data dir; a PostgreSQL store lives elsewhere.
    if (db.profile.name === 'sqlite') hub.watchDataDir(dataDir, sink);
    // --- authentication area: signing secret (secrets.jwtSecret), external issuer, throttle ---
    hub.auth = new AuthServices(config, secrets, (r) => roles.has(r), (e) => deferred.addAudit(e));
    registerAuthServices(hub, hub.auth);
    hub.auth.external?.warm();
    // --- end authentication area ---
    hub.firstStartKey = await hub.bootstrap();
    if (options.sweeper === true) hub.startSweeper();
    return hub;
  }

  /**
   * Writes are refused once the data dir or its database file is removed or replaced (a hub
   * would otherwise acknowledge writes into an unlinked file).
   */
  private watchDataDir(dataDir: string, sink: WorkerSink | null): void {
    const { db, log, clock } = this;
    const watch = new DataDirWatch(dataDir, (lost) => {
      const message = 'the data directory was removed or replaced; restart the hub';
      log.error({ reason: lost.reason }, message);
      db.block({ code: 'storage_readonly', message, at: clock.now() });
      sink?.block('storage_readonly', message);
    });
    this.dataWatch = watch;
    watch.start();
    // Also checked before writing, once per event-loop turn (writes of one turn commit together):
    // a write right after the removal is refused too, not acknowledged into the unlinked file.
    // Four stat calls (dir, database, WAL, index), about 7 µs, per turn that writes.
    const write = db.write.bind(db);
    let checked = false;
    db.write = <T>(fn: (ex: Executor) => Promise<T>, mode?: WriteMode, project?: string, options?: WriteOptions): Promise<T> => {
      if (!checked) {
        checked = true;
        setImmediate(() => {
          checked = false;
        });
        watch.check();
      }
      return write(fn, mode, project, options);
    };
  }

  /** First start: the default project and a server-admin key, created once even if processes race. */
  private async bootstrap(): Promise<string | null> {
    return this.db.write(async (ex) => {
      if (await anyToken(ex)) return null;
      const now = this.clock.now();
      const project = await ensureProject(ex, DEFAULT_PROJECT, now);
      await ensureAgent(ex, project.id, 'admin', 'admin', now);
      const key = generateKey();
      await insertToken(ex, {
        id: newId('tok'),
        project_id: project.id,
        name: 'admin',
        role: 'admin',
        server_admin: 1,
        key_hash: hashKey(this.secrets.keyPepper, key),
        prefix: keyPrefix(key),
        created_by: null,
        created_at: now,
        expires_at: null,
      });
      return key;
    });
  }

  /** Resolves a credential to its principal, or refuses. Checked on every call: revocation is instant. */
  authenticate(credential: string | Credential | undefined): Promise<Principal> {
    return this.db.read(this.resolver(credential));
  }

  /**
   * A resolver the runner calls inside the op's own transaction, so a request costs one store
   * round. The token is an API key, an access token (JWT) or an external issuer's token; the HTTP
   * surface adds the client's address (a bare string is a token without one). Keys are never
   * cached as valid: only their keyed hash is memoised. A JWT's signature and claims are checked
   * as soon as the resolver is made (outside the transaction); inside it, the key an access token
   * was issued for must still be live, so a token dies with its key (S3). Every refusal counts
   * against the caller's address and key prefix (S6).
   */
  resolver(presented: string | Credential | undefined): ResolvePrincipal {
    const { token: credential, address } =
      typeof presented === 'object' ? presented : { token: presented, address: undefined };
    const auth = this.auth;
    let pending = credential !== undefined && looksLikeJwt(credential) ? this.verifyJwt(credential) : null;
    pending?.catch(() => undefined); // observed when the resolver runs
    // An API key's row read ahead in the op's own transaction (lookAhead), used once by that transaction.
    let early: EarlyKey | null = null;
    let counted = false;
    const resolve = async (ex: Executor): Promise<Principal> => {
      try {
        // A wait re-resolves every round: the first uses the verification begun above, later ones verify again.
        const verified = pending ?? (credential !== undefined && looksLikeJwt(credential) ? this.verifyJwt(credential) : null);
        pending = null;
        // Only the transaction that read it ahead may use it (its memo is that transaction's own).
        const ahead = early !== null && early.memo === ex.memo ? early.row : null;
        early = null;
        const p = await this.resolveIn(ex, credential, address, verified, ahead);
        if (credential !== undefined && this.projectHints.get(credential) !== p.projectId) {
          if (this.projectHints.size >= 10_000) this.projectHints.clear();
          this.projectHints.set(credential, p.projectId);
        }
        return p;
      } catch (err) {
        // Once per request: a transaction the store runs again (a batch run once more with
        // savepoints) resolves the credential again, and must not count its failure twice.
        if (err instanceof BatonError && err.code === 'unauthenticated' && !counted) {
          counted = true;
          auth.failed(address, credential, this.clock.now(), this.newRequestId(), address === undefined ? 'internal' : 'http');
        }
        throw err;
      }
    };
    /**
     * Starts the key's lookup in the write transaction `ex` before its op runs (db.ts WriteOptions
     * `ahead`: on PostgreSQL it goes out with BEGIN, and the op does not wait for it in turn).
     * Still read inside the op's transaction, as every credential is; a key whose row read ahead
     * refuses it is looked up again when the op runs.
     */
    const lookAhead = (ex: Executor): void => {
      if (credential === undefined || !looksLikeKey(credential) || ex.memo === null) return;
      early = { memo: ex.memo, row: keyAhead(ex, ex.memo, this.keyHash(credential)) };
    };
    return Object.assign(resolve, { projectHint: credential === undefined ? undefined : this.projectHints.get(credential), lookAhead });
  }

  /** A key's keyed hash (the pepper's HMAC), memoised per key: never whether the key is valid. */
  private keyHash(credential: string): string {
    let hash = this.keyHashes.get(credential);
    if (hash === undefined) {
      hash = hashKey(this.secrets.keyPepper, credential);
      if (this.keyHashes.size >= 10_000) this.keyHashes.clear();
      this.keyHashes.set(credential, hash);
    }
    return hash;
  }

  private verifyJwt(token: string): Promise<{ local: AccessClaims } | { external: ExternalIdentity }> {
    const now = this.clock.now();
    const ext = this.auth.external;
    if (ext !== null && ext.claims(token)) return ext.verify(token, now).then((external) => ({ external }));
    return this.auth.access.verify(token, now).then((local) => ({ local }));
  }

  private async resolveIn(
    ex: Executor,
    credential: string | undefined,
    address: string | undefined,
    verified: Promise<{ local: AccessClaims } | { external: ExternalIdentity }> | null,
    ahead: Promise<KeyForAuth | undefined> | null = null,
  ): Promise<Principal> {
    const refuse = (): BatonError => new BatonError('unauthenticated', 'missing or invalid credentials');
    if (credential === undefined) throw refuse();
    const now = this.clock.now();
    if (looksLikeKey(credential)) {
      // Read ahead and usable: the principal. Anything else is settled by reading it again now.
      const early = ahead === null ? undefined : await ahead;
      if (this.usableKey(early, address, now)) return this.keyPrincipal(early, address, now);
      return this.keyPrincipal(await keyByHash(ex, this.keyHash(credential)), address, now);
    }
    if (verified === null) throw refuse();
    const v = await verified;
    if ('external' in v) return this.externalPrincipal(ex, v.external, now);
    const p = this.keyPrincipal(await keyById(ex, v.local.tid), address, now);
    if (p.agentId !== v.local.sub || p.projectId !== v.local.prj || p.role !== v.local.role) throw refuse();
    if (!(await accessFamilyLive(ex, v.local))) throw refuse();
    return p;
  }

  /** A key row of a live key, with its agent, presented from an address it is bound to. */
  private usableKey(token: KeyForAuth | undefined, address: string | undefined, now: number): token is KeyForAuth & { agent_id: string } {
    return token !== undefined && token.agent_id !== null && this.auth.keyIsLive(token, address, now);
  }

  /** A key row → its principal, if the key is live and the address is one it is bound to. */
  private keyPrincipal(token: KeyForAuth | undefined, address: string | undefined, now: number): Principal {
    if (!this.usableKey(token, address, now)) throw new BatonError('unauthenticated', 'missing or invalid credentials');
    return {
      tokenId: token.id,
      projectId: token.project_id,
      projectName: token.project_name,
      role: token.role,
      agentId: token.agent_id,
      agentName: token.name,
      serverAdmin: token.server_admin === 1,
    };
  }

  /**
   * The principal of an external issuer's token: the agent linked to (issuer, sub) in the
   * configured project, created and linked on first use (one write, in the op's own transaction:
   * on SQLite a read transaction upgrades; the process-wide mutex is held either way). Never an
   * agent found by name: an API-key agent whose name equals `sub` stays out of reach (issue 8),
   * and the agent's stored role is never rewritten here; the token's role is this call's role.
   */
  private async externalPrincipal(ex: Executor, id: ExternalIdentity, now: number): Promise<Principal> {
    const projectName = this.config.oauthProject;
    const project = (await projectByName(ex, projectName)) ?? (await ensureProject(ex, projectName, now));
    let agent = await externalAgent(ex, id.issuer, id.name, project.id);
    if (agent === undefined) {
      let name = id.name;
      if ((await agentByName(ex, project.id, name)) !== undefined) name = namespacedName(id.issuer, id.name);
      // Someone minted a key under the namespaced name too: refuse rather than merge.
      if ((await agentByName(ex, project.id, name)) !== undefined) {
        throw new BatonError('unauthenticated', 'missing or invalid credentials');
      }
      agent = await createAgent(ex, project.id, name, id.role, now);
      await linkExternal(ex, id.issuer, id.name, project.id, agent.id, now);
    }
    return {
      tokenId: null,
      projectId: project.id,
      projectName: project.name,
      role: id.role,
      agentId: agent.id,
      agentName: agent.name,
      serverAdmin: false,
    };
  }

  /**
   * The tool tier a connection lists (issue 11): the connection's own choice when it made one
   * (stdio BATON_TOOLS, HTTP `?tools=` or X-Baton-Tools), else its key's (migration 13), else the
   * server default. A tier is presentation, never permission: the override may widen or narrow.
   */
  async toolTier(principal: Principal, override?: Tier): Promise<Tier> {
    if (override !== undefined) return override;
    if (principal.tokenId !== null) {
      const id = principal.tokenId;
      const own = await this.db.read((ex) => keyTools(ex, id));
      if (isTier(own)) return own;
    }
    return this.config.toolsDefault;
  }

  /** The local operator or a keyless local agent (S7): the data dir's file permissions are the boundary. */
  async localPrincipal(agentName: string, role: string, projectName = DEFAULT_PROJECT): Promise<Principal> {
    if (!this.roles.has(role)) throw new BatonError('invalid_input', `unknown role "${role}"`);
    const project = await this.db.write((ex) => ensureProject(ex, projectName, this.clock.now()));
    return {
      tokenId: null,
      projectId: project.id,
      projectName: project.name,
      role,
      agentId: await this.agentId(project.id, agentName, role),
      agentName,
      serverAdmin: role === 'admin',
    };
  }

  private async agentId(projectId: string, name: string, role: string): Promise<string> {
    const cacheKey = `${projectId}\u0000${name}\u0000${role}`;
    const cached = this.agentIds.get(cacheKey);
    if (cached !== undefined) return cached;
    const agent = await this.db.write((ex) => ensureAgent(ex, projectId, name, role, this.clock.now()));
    this.agentIds.set(cacheKey, agent.id);
    return agent.id;
  }

  /**
   * The seal of one project's positions (event ids, cursors; ops/positions.ts) for a surface that
   * shows events outside an op: the event stream (src/api/http/stream.ts).
   */
  positionSeal(projectId: string): Seal {
    return { secret: this.secrets.keyPepper, scope: projectId };
  }

  call(op: string, input: unknown, who: Principal | ResolvePrincipal, meta: CallMeta): Promise<unknown> {
    return this.runner.call(op, input, who, meta);
  }

  /** The database's schema version and the latest this Baton knows (readiness, doctor). */
  async schemaStatus(): Promise<{ version: number; latest: number }> {
    return { version: await this.db.read(schemaVersion), latest: LATEST_MIGRATION };
  }

  /** Walks the audit hash chain (S29): whether it holds, and the first bad row. */
  verifyAudit(): Promise<AuditVerdict> {
    return this.db.read((ex) => verifyAudit(ex, this.auditKey));
  }

  /** The store's circuit breaker (PostgreSQL), or null without one (breaker.ts). */
  storeCircuit(): CircuitState | null {
    return circuitOf(this.db);
  }

  /** Whether the data dir and database file are still the ones opened (checked now). */
  dataDirState(): DataDirState {
    return this.dataWatch?.check() ?? { ok: true };
  }

  /** The deferred writer and its worker: state, restarts, rows queued and dropped. */
  deferredHealth(): SinkHealth & { queued: number; dropped: number; failing: boolean } {
    const sink = this.workerSink?.health() ?? { state: 'inline' as const, restarts: 0, pending: 0 };
    return { ...sink, ...this.deferred.health() };
  }

  /** Fault injection (tests): ends the deferred-audit worker as a crash would. */
  async killDeferredWorker(): Promise<void> {
    await this.workerSink?.kill();
  }

  /**
   * Expiry, in one transaction: expired leases back to the board (or dead-lettered),
   * expired memory deleted, expired locks released, finished sessions past retention removed.
   * Nothing an agent still holds is touched. Returns how many leases were swept.
   *
   * Leases are wall time (several processes share them), so first the tick looks for a wall-clock
   * step since the previous one (wall delta against monotonic delta, beyond the interval plus
   * slack): a forward step moves live leases forward by the step before any is expired, so a +10
   * min step does not dead-letter tasks whose holders are heartbeating. A backward step needs
   * nothing (leases just last longer by it).
   */
  async sweep(): Promise<number> {
    const now = this.clock.now();
    let settle = (): void => undefined;
    let changed = 0;
    const swept = await this.db.write(async (ex) => {
      const emit = (projectId: string, type: string, subject: string, data: Record<string, unknown>): Promise<void> => {
        changed++;
        return appendEvent(ex, projectId, type, subject, null, JSON.stringify(data), now);
      };
      const { steps, settle: settled } = await wallSteps(ex, this.config, this.clock, now);
      settle = settled;
      for (const step of steps) {
        const moved = await extendLeasesAfterStep(ex, step);
        this.log.warn({ step_ms: step.stepMs, leases_moved: moved }, 'wall clock stepped forward; live leases moved with it');
      }
      const leases = await sweepLeases(ex, now, await expiredLeases(ex, now, null), emit);
      await sweepMemory(ex, now);
      for (const l of await sweepLocks(ex, now)) {
        const e = lockReleasedEvent(l, 'expired');
        await emit(e.projectId, e.type, e.subject, e.data);
      }
      await sweepSessions(ex, now - this.config.sessionRetentionMs);
      if (this.config.auditRetentionDays > 0) await sweepAudit(ex, now, this.config.auditRetentionDays * 86_400_000, this.auditKey);
      return leases;
    });
    settle();
    if (changed > 0) this.bus.ring();
    return swept;
  }

  /**
   * Retention (see settings/retention.ts): old events, finished tasks and read threads are
   * removed in chunks of `retentionChunk`, each chunk its own short write transaction so that no
   * delete holds the write lock for long, until caught up (or `maxChunks` per kind, for tests).
   * Paced: after each chunk it pauses as long as the chunk's statements took (PRUNE_PAUSE_MAX_MS),
   * so a catch-up takes at most about half of the writer. Run back to back (a turn of the event
   * loop between chunks), the first prune of a busy minute in the soak (110k finished tasks, 285k
   * events) dropped the hub to 5-30 % of its rate for 20 s; paced, to 35-45 % for 49 s.
   * Returns what was removed.
   */
  async prune(maxChunks = Number.POSITIVE_INFINITY): Promise<{ events: number; tasks: number; threads: number }> {
    const c = this.config;
    const out = { events: 0, tasks: 0, threads: 0 };
    const chunked = async (step: (ex: Executor, now: number) => Promise<number>, size: number): Promise<number> => {
      let total = 0;
      // Until caught up: a fixed number of chunks per run fell behind a busy hub (measured in the
      // soak: ~90k events a minute against 40k pruned). Each chunk is its own short transaction.
      for (let i = 0; i < maxChunks && !this.closing; i++) {
        let took = 0;
        const n = await this.db.write(async (ex) => {
          const began = performance.now();
          const removed = await step(ex, this.clock.now());
          took = performance.now() - began;
          return removed;
        });
        total += n;
        if (n < size || i + 1 >= maxChunks) break;
        // The chunk's own statements (the batch's other writes and COMMIT not counted).
        await this.pause(Math.min(PRUNE_PAUSE_MAX_MS, took));
      }
      return total;
    };
    if (c.eventRetentionMs > 0 || c.eventRetentionMax > 0) {
      const cutoff = (now: number): number | null => (c.eventRetentionMs > 0 ? now - c.eventRetentionMs : null);
      out.events = await chunked((ex, now) => pruneEvents(ex, cutoff(now), c.eventRetentionMax, c.retentionChunk), c.retentionChunk);
    }
    if (c.taskRetentionMs > 0) {
      // A task's rows and index entries (random ids) are spread over pages: ~10x an event's cost.
      const tasks = Math.max(1, Math.floor(c.retentionChunk / 4));
      out.tasks = await chunked((ex, now) => purgeTasks(ex, now - c.taskRetentionMs, tasks), tasks);
    }
    if (c.messageRetentionMs > 0) {
      // A thread is a handful of statements: fewer per chunk.
      const threads = Math.max(1, Math.floor(c.retentionChunk / 10));
      out.threads = await chunked((ex, now) => purgeMessages(ex, now - c.messageRetentionMs, threads), threads);
    }
    return out;
  }

  /** Waits `ms` (a timer, not the hub's clock), or until close() starts (not at all once it has). */
  private pause(ms: number): Promise<void> {
    if (this.closing) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.pauses.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.pauses.add(wake);
    });
  }

  /** Where the hub's wall clock comes from, and on PostgreSQL how far this host is off it (readyz, doctor, metrics). */
  clockStatus(): { source: 'local' } | ({ source: 'database' } & Partial<ClockSyncStatus>) {
    if (this.synced === null) return { source: 'local' };
    return { source: 'database', ...(this.synced.status() ?? {}) };
  }

  /** Re-reads the database server's clock now (tests; the timer does it every CLOCK_SYNC_INTERVAL_MS). */
  async resyncClock(): Promise<void> {
    if (this.synced !== null) await syncClock(this.db, this.synced, this.log, false);
  }

  private startClockSync(synced: SyncedClock): void {
    this.synced = synced;
    this.clockTimer = setInterval(() => void syncClock(this.db, synced, this.log, false), CLOCK_SYNC_INTERVAL_MS);
    this.clockTimer.unref();
  }

  /**
   * A background job failed. A storage fault (disk full, damage, read-only, the data dir gone)
   * or outage (PostgreSQL unreachable) is the store's to report, once when it starts and every
   * 10 s while it lasts (or once, for a removed data dir): logged again here it was an error every
   * second. Contention is a warning; anything else is logged whole.
   */
  private backgroundFailed(what: string, err: unknown): void {
    const kind = storeFailureKind(err);
    // A fault or an outage (the store unreachable) is reported by the store itself, at most every 10 s.
    if (kind === 'fault' || kind === 'outage') this.log.debug({ code: (err as BatonError).code }, `${what} failed`);
    else if (kind === 'busy') this.log.warn({ code: (err as BatonError).code }, `${what} failed`);
    else this.log.error({ err }, `${what} failed`);
  }

  startSweeper(): void {
    if (this.sweepTimer !== null) return;
    clockSteps(this.config, this.clock).observe(); // the reference reading the first tick compares with
    let lastPrune = this.clock.monotonic();
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.backgroundFailed('lease sweep', err));
      if (this.pruning !== null || this.clock.monotonic() - lastPrune < this.config.retentionIntervalMs) return;
      lastPrune = this.clock.monotonic();
      const began = performance.now();
      this.pruning = this.prune()
        .then((removed) => {
          if (removed.events + removed.tasks + removed.threads > 0) this.log.info({ removed, ms: Math.round(performance.now() - began) }, 'retention');
        })
        .catch((err: unknown) => this.backgroundFailed('retention', err))
        .finally(() => {
          this.pruning = null;
        });
    }, this.config.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /**
   * Request ids only need to be unique and unguessable enough not to collide across processes:
   * a random per-process prefix and a counter. (A getrandom call per request cost ~7 % of a read.)
   */
  newRequestId(): string {
    return `req_${this.requestPrefix}${(this.requestSeq++).toString(36)}`;
  }

  async close(): Promise<void> {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (this.clockTimer !== null) clearInterval(this.clockTimer);
    this.clockTimer = null;
    // A retention run in progress stops after its current chunk instead of writing to a closed store.
    this.closing = true;
    for (const wake of [...this.pauses]) wake();
    // Bounded too: a chunk of a store that stopped answering waits for the client's query timeout.
    if (this.pruning !== null) await settlesWithin(this.pruning, STORE_CLOSE_MS);
    this.dataWatch?.stop();
    this.bus.close();
    await closeDeferred(this.deferred, this.workerSink, this.log);
    // Bounded: a PostgreSQL server that stopped answering holds its connections until the
    // client's query_timeout; a stop (SIGTERM) must not wait for it. Writes still queued were
    // not acknowledged.
    if (!(await settlesWithin(this.db.close(), STORE_CLOSE_MS))) {
      this.log.warn({ ms: STORE_CLOSE_MS }, 'the store did not close in time (a database that stopped answering?); closing without it');
    }
  }
}

/** How long `close()` waits for the store's own close (ms). */
const STORE_CLOSE_MS = 10_000;

/**
 * One sync of the hub's clock with the database server's (core/synced-clock.ts). A failure keeps
 * the clock running from the last good sync (never back to this host's wall clock, which would
 * be a step; before the first good sync, that wall clock is all there is, and the first good sync
 * then moves the clock by the host's offset: warned of below); the store's own errors are
 * reported elsewhere.
 */
async function syncClock(db: Db, clock: SyncedClock, log: Logger, first: boolean): Promise<void> {
  let samples: Awaited<ReturnType<typeof sampleServerClock>>;
  try {
    samples = await sampleServerClock(db, clock.local);
  } catch (err) {
    const failures = clock.failed();
    log.warn({ code: (err as { code?: unknown }).code, failures }, 'could not read the database server clock');
    return;
  }
  if (samples === null || samples.length === 0) return;
  const before = clock.status();
  const s = clock.adopt(samples);
  const offset = Math.round(s.offsetMs);
  if (first) log.info({ offset_ms: offset, rtt_ms: Math.round(s.rttMs * 10) / 10 }, 'hub clock set from the database server');
  const wasOff = before !== null && Math.abs(before.offsetMs) > CLOCK_OFFSET_WARN_MS;
  if (Math.abs(s.offsetMs) > CLOCK_OFFSET_WARN_MS && (first || !wasOff)) {
    log.warn({ offset_ms: offset }, "this host's clock differs from the database server's; the hub keeps the database's time (check NTP)");
  }
  if (!first && Math.abs(s.correctionMs) > CLOCK_OFFSET_WARN_MS) log.warn({ step_ms: Math.round(s.correctionMs) }, "the database server's clock stepped");
}

/** The data dir is private to the server's user (0700); files created in it default to 0600. */
function prepareDataDir(dir: string, log: Logger): void {
  process.umask(0o077);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } else {
    const mode = statSync(dir).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      chmodSync(dir, 0o700);
      log.warn({ dir, was: mode.toString(8) }, 'data dir was accessible to other users; set to 0700');
    }
  }
  ignoreInGit(dir, log);
}

/**
 * A PostgreSQL hub's data dir holds no database, and no secrets.json when its secrets come from
 * the environment (production): `store.json` (backend and schema, never the URL, which may hold a
 * password) says that a hub was started from it, so the CLI finds it (cli/common.ts hubExists)
 * instead of answering "no Baton database" and calling it new at every start. Written once.
 */
function markPostgresHub(dir: string, schema: string, log: Logger): void {
  try {
    writeFileSync(join(dir, STORE_MARKER), `${JSON.stringify({ backend: 'postgres', schema })}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') log.warn({ dir, code }, 'could not write store.json in the data dir');
  }
}

/**
 * The data dir holds keys (agents/*.env, admin-key.txt), secrets and the database: a `.gitignore`
 * of `*` inside it keeps git from adding any of it, whatever the dir is called and wherever it
 * sits in a repository (a project's own `.gitignore` names only `.baton/`). Created once, never
 * overwritten.
 */
function ignoreInGit(dir: string, log: Logger): void {
  try {
    writeFileSync(join(dir, '.gitignore'), "# Baton's data dir: keys, secrets and the database. Never commit it.\n*\n", { flag: 'wx', mode: 0o600 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') log.warn({ dir, code }, 'could not write .gitignore in the data dir');
  }
}
