import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { authServices } from '../../auth/service.js';
import { BatonError, isBatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import type { Executor, WriteMode, WriteOptions } from '../../store/db.js';
import { eventsHead } from '../../store/journal.js';
import { countEventsAfter, readyByPriority, tasksByState } from '../../store/metrics.js';
import { storeFailureKind } from '../../store/faults.js';
import { clientAddress, credentialOf } from './auth-routes.js';
import { looksLikeKey } from '../../auth/keys.js';
import { looksLikeJwt } from '../../auth/jwt.js';
import type { EventStreams } from './stream.js';

/**
 * `GET /metrics`: Prometheus text format (prom-client), for the operator's monitoring (issue 10).
 * Outside the catalog, read-only, never a write path. Counts cover every project, so it is behind
 * a server-admin credential (API key or access token of a server admin: a project's admin would
 * otherwise learn other projects' volumes, S9) or the `metricsToken` setting (a bearer credential
 * good for this route only); 401 otherwise (counted and throttled like every failure), 403 for a
 * valid non-server-admin credential.
 *
 * Series (all `baton_` prefixed):
 * - `op_calls_total{op,outcome}` and `op_duration_seconds{op}`: every op call through the runner
 *   (`Runner.onCall`: outcome is `ok` or the error code; an unknown op name is `op="unknown"`).
 * - `tasks{state}`, `queue_ready{priority}`: read from the store at scrape time.
 * - `leases_expired_total`: `task.lease_expired` events since start, whichever process swept them
 *   (counted from the events table, only the rows since the last scrape).
 * - `waiters` (doorbell waits in progress: long polls), `stream_subscribers`,
 *   `stream_fanout_seconds` (a project's round: read, format, write to every viewer).
 * - `auth_failures_total`, `rate_limited_total{layer}` (`op`: per-principal op limits;
 *   `auth`: the failed-authentication throttle; `address`: the per-address HTTP budget).
 * - `store_transaction_seconds{kind}` and `store_errors_total{kind}`: every read and write
 *   transaction of this process (an error is a failure of the store, not an op's refusal).
 * - `clock_offset_seconds`, `clock_sync_rtt_seconds` (PostgreSQL): this host's clock against the
 *   database server's, which the hub uses (core/synced-clock.ts).
 * - prom-client's default process metrics (`baton_process_resident_memory_bytes`, event loop lag, …).
 */
export class HubMetrics {
  readonly registry = new Registry();
  /** Op calls by op, then outcome (see OpCalls). */
  private readonly opCalls: OpCalls = new Map();
  private readonly opDuration: FastHistogram;
  private readonly authFailures: Counter;
  readonly rateLimited: Counter<'layer'>;
  private readonly storeSeconds: FastHistogram;
  private readonly storeErrors: Counter<'kind'>;
  private readonly leasesExpired: Counter;
  private readonly fanout: Histogram;
  private leaseCursor: Promise<number>;
  private streams: EventStreams | null = null;

  private constructor(private readonly hub: Hub) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'baton_' });
    const opCalls = this.opCalls;
    new Counter({
      name: 'baton_op_calls_total',
      help: 'Op calls by op and outcome (ok or error code).',
      labelNames: ['op', 'outcome'],
      registers: [r],
      collect(this: Counter<'op' | 'outcome'>) {
        this.reset();
        for (const [op, outcomes] of opCalls) for (const [outcome, n] of outcomes) this.inc({ op, outcome }, n);
      },
    });
    this.opDuration = new FastHistogram(
      'baton_op_duration_seconds',
      'Op call duration, waits included.',
      'op',
      [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30, 60],
    );
    r.registerMetric(this.opDuration as unknown as Metric);
    this.authFailures = new Counter({ name: 'baton_auth_failures_total', help: 'Failed authentications.', registers: [r] });
    this.rateLimited = new Counter({
      name: 'baton_rate_limited_total',
      help: 'Requests refused by a rate limit: op (per principal), auth (failure throttle), address (per-address HTTP budget).',
      labelNames: ['layer'],
      registers: [r],
    });
    this.storeSeconds = new FastHistogram(
      'baton_store_transaction_seconds',
      'Store transactions of this process by kind (read, write), queueing for the lock included.',
      'kind',
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    );
    r.registerMetric(this.storeSeconds as unknown as Metric);
    this.storeErrors = new Counter({ name: 'baton_store_errors_total', help: 'Store transactions that failed in the store (busy, faults, internal errors).', labelNames: ['kind'], registers: [r] });
    this.fanout = new Histogram({
      name: 'baton_stream_fanout_seconds',
      help: 'Event stream rounds that sent events: one project\'s read, formatting and writes to every viewer.',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
      registers: [r],
    });
    this.leasesExpired = new Counter({ name: 'baton_leases_expired_total', help: 'Leases expired (task.lease_expired events) since this process started.', registers: [r] });
    new Gauge({
      name: 'baton_tasks',
      help: 'Tasks by state, all projects.',
      labelNames: ['state'],
      registers: [r],
      collect: async function (this: Gauge<'state'>) {
        this.reset();
        for (const row of await hub.db.read(tasksByState)) this.set({ state: row.status }, row.n);
      },
    });
    new Gauge({
      name: 'baton_queue_ready',
      help: 'Ready (claimable) tasks by priority, all projects.',
      labelNames: ['priority'],
      registers: [r],
      collect: async function (this: Gauge<'priority'>) {
        this.reset();
        for (const row of await hub.db.read(readyByPriority)) this.set({ priority: String(row.priority) }, row.n);
      },
    });
    const streams = (): number => this.streams?.count ?? 0;
    new Gauge({
      name: 'baton_waiters',
      help: 'Doorbell waits in progress (long polls and the event stream loop).',
      registers: [r],
      collect(this: Gauge) {
        this.set(hub.bus.waiting);
      },
    });
    new Gauge({
      name: 'baton_stream_subscribers',
      help: 'Open event streams.',
      registers: [r],
      collect(this: Gauge) {
        this.set(streams());
      },
    });
    // PostgreSQL: the hub runs on the database server's clock (core/synced-clock.ts); how far this
    // host's own clock is off it. Absent on SQLite (no series: the local clock is the clock).
    if (hub.clockStatus().source === 'database') {
      const clockGauge = (name: string, help: string, field: 'offsetMs' | 'rttMs'): void => {
        new Gauge({
          name,
          help,
          registers: [r],
          collect(this: Gauge) {
            const c = hub.clockStatus();
            // NaN until a sync succeeds: a 0 would read as a perfect one.
            const ms = c.source === 'database' ? c[field] : undefined;
            this.set(ms === undefined ? NaN : ms / 1000);
          },
        });
      };
      clockGauge('baton_clock_offset_seconds', "The database server's clock minus this host's wall clock, at the last sync (the hub uses the database's).", 'offsetMs');
      clockGauge('baton_clock_sync_rtt_seconds', "Round trip of the last clock sync's best sample; the hub's clock is good to about half of it.", 'rttMs');
    }
    this.leaseCursor = hub.db.read(eventsHead);
    this.leaseCursor.catch(() => undefined);
  }

  /** The metrics of one hub, created (and its hooks installed) on first use. */
  static of(hub: Hub): HubMetrics {
    let m = registry.get(hub);
    if (m === undefined) {
      m = new HubMetrics(hub);
      m.install();
      registry.set(hub, m);
    }
    return m;
  }

  /** The event streams whose subscribers are counted and whose fan-out rounds are timed. */
  watch(streams: EventStreams): void {
    this.streams = streams;
    streams.onRound = (ms) => this.fanout.observe(ms / 1000);
  }

  private install(): void {
    const { hub } = this;
    hub.runner.onCall = (op, outcome, ms) => {
      const name = op ?? 'unknown';
      let outcomes = this.opCalls.get(name);
      if (outcomes === undefined) this.opCalls.set(name, (outcomes = new Map()));
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      this.opDuration.observe(name, ms / 1000);
      if (outcome === 'rate_limited') this.rateLimited.inc({ layer: 'op' });
    };
    hub.runner.onRateLimited = () => this.rateLimited.inc({ layer: 'op' });
    authServices(hub).onFailure = (throttled) => {
      if (throttled) this.rateLimited.inc({ layer: 'auth' });
      else this.authFailures.inc();
    };
    const db = hub.db;
    // Wrapped as Hub.open wraps write() for the data-dir check: every transaction of this process.
    const timed = <T>(kind: 'read' | 'write', started: number, work: Promise<T>): Promise<T> =>
      work.then(
        (v) => {
          this.storeSeconds.observe(kind, (performance.now() - started) / 1000);
          return v;
        },
        (err: unknown) => {
          this.storeSeconds.observe(kind, (performance.now() - started) / 1000);
          // What the store raised (busy, outage, fault), or a driver's own error it did not map: not
          // an op's refusal (not_found, conflict …), nor its caller leaving mid-wait, nor a bug.
          if (storeFailureKind(err) !== null || driverError(err)) this.storeErrors.inc({ kind });
          throw err;
        },
      );
    const read = db.read.bind(db);
    const write = db.write.bind(db);
    db.read = <T>(fn: (ex: Executor) => Promise<T>): Promise<T> => timed('read', performance.now(), read(fn));
    // A write's mode, project and read-ahead pass through: they decide its PostgreSQL locks and batch.
    db.write = <T>(fn: (ex: Executor) => Promise<T>, mode?: WriteMode, project?: string, options?: WriteOptions): Promise<T> =>
      timed('write', performance.now(), write(fn, mode, project, options));
  }

  /** Lease expiries since the last scrape, from the events table. */
  private async countLeases(): Promise<void> {
    const after = await this.leaseCursor;
    const out = await this.hub.db.read((ex) => countEventsAfter(ex, 'task.lease_expired', after));
    if (out.n > 0) this.leasesExpired.inc(out.n);
    this.leaseCursor = Promise.resolve(out.head);
  }

  async text(): Promise<string> {
    await this.countLeases();
    return this.registry.metrics();
  }
}

const registry = new WeakMap<Hub, HubMetrics>();

/**
 * The series observed on every call (op calls, op and store durations) are counted in plain maps
 * and objects made once per label value, and handed to prom-client only when scraped:
 * prom-client validates and hashes the labels of every observation, which was ~1-2 % of `baton
 * serve`'s CPU under claim+complete load (docs/BENCHMARKS.md).
 */
type OpCalls = Map<string, Map<string, number>>;

interface Sample {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

interface Buckets {
  counts: number[];
  sum: number;
  count: number;
}

/** A Prometheus histogram with one label, in prom-client's exposition (see OpCalls for why). */
class FastHistogram {
  private readonly series = new Map<string, Buckets>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly label: string,
    private readonly bounds: readonly number[],
  ) {}

  observe(value: string, seconds: number): void {
    let b = this.series.get(value);
    if (b === undefined) {
      b = { counts: new Array<number>(this.bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.series.set(value, b);
    }
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i++;
    b.counts[i]!++;
    b.sum += seconds;
    b.count++;
  }

  /** What prom-client's registry prints (cumulative buckets, then _sum and _count per label value). */
  get(): { name: string; help: string; type: 'histogram'; values: Sample[]; aggregator: 'sum' } {
    const values: Sample[] = [];
    for (const [value, b] of this.series) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += b.counts[i]!;
        const le = i < this.bounds.length ? this.bounds[i]! : '+Inf';
        values.push({ metricName: `${this.name}_bucket`, labels: { le, [this.label]: value }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: { [this.label]: value }, value: b.sum });
      values.push({ metricName: `${this.name}_count`, labels: { [this.label]: value }, value: b.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' };
  }

  reset(): void {
    this.series.clear();
  }
}

/** Is this the configured metrics token (constant time)? */
function isMetricsToken(hub: Hub, presented: string | undefined): boolean {
  const want = hub.config.metricsToken;
  if (want === '' || presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Answers `GET /metrics`; false for any other path. */
export async function handleMetrics(hub: Hub, metrics: HubMetrics, req: IncomingMessage, res: ServerResponse, path: string, requestId: string): Promise<boolean> {
  if (path !== '/metrics') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new BatonError('invalid_input', 'method not allowed here');
  const bearer = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '')?.[1];
  // A metrics-token guess from a blocked address is refused before it is compared, so the answer
  // (200 or 429) says nothing about the guess; keys and JWTs keep S6's rule (a valid one succeeds).
  if (bearer === undefined || (!looksLikeKey(bearer) && !looksLikeJwt(bearer))) {
    authServices(hub).refuseUncredentialed(clientAddress(req), hub.clock.now(), requestId, 'http');
  }
  if (!isMetricsToken(hub, bearer)) {
    const p = await hub.authenticate(credentialOf(hub, req, requestId));
    if (!p.serverAdmin) throw new BatonError('forbidden', 'metrics need a server admin key or the metrics token');
  }
  const text = await metrics.text();
  res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store', 'x-request-id': requestId });
  res.end(req.method === 'HEAD' ? undefined : text);
  return true;
}

/** An error a database driver raised (SQLite's `SQLITE_*` code, a PostgreSQL SQLSTATE). */
function driverError(err: unknown): boolean {
  if (isBatonError(err)) return false;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('SQLITE_') || /^[0-9A-Z]{5}$/.test(code));
}
