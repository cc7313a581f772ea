import type { Hub } from '../../hub.js';
import { VERSION } from '../../version.js';

/**
 * `GET /healthz`: the process is alive (no store work at all). `GET /readyz`: whether this hub
 * should get traffic, check by check, 200 when every check passes and 503 otherwise. Neither
 * needs a key, so neither says more than an operator's balancer needs: no paths, no SQL, no
 * store messages (those are in the log and in `baton doctor`).
 */

export interface Check {
  ok: boolean;
  /** A stable word for what is wrong (or the state when fine). */
  status: string;
  [detail: string]: unknown;
}

export interface Readiness {
  /** `degraded`: the store's circuit breaker is open (the store cannot be reached); calls are refused at once until it answers. */
  status: 'ready' | 'not_ready' | 'degraded';
  version: string;
  checks: Record<string, Check>;
}

/** How long a store probe is reused: a balancer polling every 100 ms costs one read a second. */
const PROBE_TTL_MS = 1_000;
/** A probe that takes longer than this (the store is stuck behind a lock) counts as failed. */
const PROBE_TIMEOUT_MS = 2_000;

interface Probe {
  at: number;
  result: Promise<{ ok: true; schema: number; latest: number } | { ok: false; status: string }>;
}

const probes = new WeakMap<Hub, Probe>();

function probeStore(hub: Hub): Probe['result'] {
  const now = hub.clock.monotonic();
  const cached = probes.get(hub);
  if (cached !== undefined && now - cached.at < PROBE_TTL_MS) return cached.result;
  let timer: NodeJS.Timeout | undefined;
  const result = Promise.race([
    hub.schemaStatus().then(
      ({ version: schema, latest }) => ({ ok: true as const, schema, latest }),
      () => ({ ok: false as const, status: 'read_failed' }),
    ),
    new Promise<{ ok: false; status: string }>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, status: 'timeout' }), PROBE_TIMEOUT_MS);
      timer.unref();
    }),
  ]).finally(() => clearTimeout(timer));
  probes.set(hub, { at: now, result });
  return result;
}

export async function readiness(hub: Hub): Promise<Readiness> {
  const checks: Record<string, Check> = {};
  const dir = hub.dataDirState();
  checks.data_dir = dir.ok ? { ok: true, status: 'present' } : { ok: false, status: dir.reason };
  const fault = hub.db.fault();
  const probe = await probeStore(hub);
  const circuit = hub.storeCircuit();
  checks.store =
    circuit !== null && circuit.state !== 'closed'
      ? // The reason is the store's generic refusal (never a URL or host): what a balancer's operator needs.
        { ok: false, status: 'circuit_open', reason: circuit.reason, since: circuit.since === null ? null : new Date(circuit.since).toISOString() }
      : fault !== null
        ? { ok: false, status: fault.code }
        : probe.ok
          ? { ok: true, status: 'writable' }
          : { ok: false, status: probe.status };
  checks.migrations = probe.ok
    ? { ok: probe.schema === probe.latest, status: probe.schema === probe.latest ? 'current' : probe.schema < probe.latest ? 'behind' : 'newer_than_this_baton', schema: probe.schema, expected: probe.latest }
    : { ok: false, status: 'unknown' };
  const d = hub.deferredHealth();
  const workerOk = d.state !== 'restarting' && d.state !== 'closed' && !d.failing;
  checks.audit_writer = {
    ok: workerOk,
    status: d.failing ? 'failing' : d.state,
    restarts: d.restarts,
    queued: d.queued,
    dropped: d.dropped,
  };
  checks.draining = hub.draining ? { ok: false, status: 'draining' } : { ok: true, status: 'accepting' };
  const integrity = hub.db.lastIntegrity();
  checks.integrity =
    integrity === null
      ? { ok: true, status: 'not_run' }
      : { ok: integrity.ok, status: integrity.ok ? 'ok' : 'damaged', mode: integrity.mode, at: new Date(integrity.at).toISOString() };
  // PostgreSQL: the hub's clock is the database server's (core/synced-clock.ts). Informational:
  // a failed sync leaves the clock running from the last good one, so it never fails readiness.
  const clock = hub.clockStatus();
  if (clock.source === 'database') {
    checks.clock = {
      ok: true,
      status: clock.syncs === undefined ? 'not_synced' : (clock.failures ?? 0) > 0 ? 'sync_failing' : 'synced',
      source: 'database',
      offset_ms: clock.offsetMs === undefined ? null : Math.round(clock.offsetMs),
      rtt_ms: clock.rttMs === undefined ? null : Math.round(clock.rttMs * 10) / 10,
      synced_at: clock.at === undefined ? null : new Date(clock.at).toISOString(),
    };
  }
  const ready = Object.values(checks).every((c) => c.ok);
  const degraded = circuit !== null && circuit.state !== 'closed';
  return { status: ready ? 'ready' : degraded ? 'degraded' : 'not_ready', version: VERSION, checks };
}

/** The answer to a health route, or null when `path` is not one. */
export async function healthAnswer(hub: Hub, path: string): Promise<{ status: number; body: unknown } | null> {
  if (path === '/healthz') return { status: 200, body: { status: 'ok', version: VERSION } };
  if (path === '/readyz') {
    const r = await readiness(hub);
    return { status: r.status === 'ready' ? 200 : 503, body: r };
  }
  return null;
}
