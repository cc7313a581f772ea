import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { BatonError, isBatonError } from '../core/errors.js';
import { Hub } from '../hub.js';
import { cliLogLevel, hubUrl, locateConfig, readTokenFile, requireDataDir, restGet, tokenFromEnv } from './common.js';
import { printable, terminalJson } from './escape.js';
import { tokenFileOf } from './setup/index.js';

/**
 * `baton watch`: one line per event that concerns the calling agent, for Claude Code's Monitor
 * tool (each stdout line becomes an event in the session), a background shell, or Codex's hooks.
 * By default it runs events_wait through the runner in this process (like every CLI command), so
 * the cross-process doorbell (SQLite data_version) wakes it when another process writes; with
 * `--url` it long-polls the same op over REST (`GET /api/v1/events`) of a `baton serve`. The key
 * is checked on every round (a revoked key ends the watch). The cursor is persisted after every
 * batch, so a restart resumes where the last one stopped; an unavailable store or unreachable
 * hub is retried with backoff (the watch reconnects); SIGINT/SIGTERM end it with exit status 0.
 */

/** What concerns an agent (events_wait reads only what the caller may see; these narrow it). */
export const WATCHED_TYPES = [
  'message.received',
  'task.ready',
  'task.created',
  'approval.decided',
  'lock.released',
  'handoff.created',
  'task.lease_expired',
  'task.lease_transferred',
] as const;

/** One round's wait: below every client's cut of a single call is irrelevant here (local), but it bounds how late a lease warning can be. */
const ROUND_MS = 25_000;
const MAX_BACKOFF_MS = 30_000;

export interface WatchEvent {
  id: string | null;
  type: string;
  subject: string | null;
  actor: string | null;
  data: Record<string, unknown> | null;
  at: string;
}

interface WatchFlags {
  data?: string;
  config?: string;
  agent?: string;
  inProject?: string;
  json?: boolean;
  after?: string;
  cursorFile?: string;
  leaseWarnS?: string;
  url?: string;
}

/** Where the watch reads from: this process's own Hub on the data dir, or a hub over HTTP. */
interface Source {
  call(op: 'whoami' | 'events_wait', input: Record<string, unknown>, signal?: AbortSignal): Promise<unknown>;
  close(): Promise<void>;
}

function httpSource(raw: string, key: string): Source {
  const base = hubUrl(raw);
  return {
    // A round waits up to its wait_ms on the hub: no answer well after it is a dead connection.
    call: (op, input, signal) =>
      restGet(base, key, op === 'whoami' ? '/whoami' : '/events', input, {
        timeoutMs: (typeof input.wait_ms === 'number' ? input.wait_ms : 0) + 15_000,
        signal,
      }),
    close: async () => undefined,
  };
}

const list = (v: unknown): string => (Array.isArray(v) ? v.map(String).join(', ') : String(v ?? ''));

/** The human line of an event: time, what happened, to what, by whom (stored text made inert for a terminal). */
export function describeEvent(e: WatchEvent): string {
  const d = e.data ?? {};
  const by = e.actor !== null ? ` by ${e.actor}` : '';
  let what: string;
  switch (e.type) {
    case 'message.received':
      what = `mail from ${String(d.from ?? e.actor ?? '?')}${d.importance !== undefined && d.importance !== 'normal' ? ` (${String(d.importance)})` : ''}: ${e.subject ?? ''} — read it with message_inbox`;
      break;
    case 'task.created':
    case 'task.ready':
      what = `task ready: ${e.subject ?? ''}${d.released === true ? ' (released)' : ''}${d.requeued === true ? ' (requeued)' : ''} — task_claim it`;
      break;
    case 'approval.decided':
      what = `approval ${e.subject ?? ''} ${String(d.status ?? 'decided')}${d.task_id !== null && d.task_id !== undefined ? ` (task ${String(d.task_id)})` : ''}${by}`;
      break;
    case 'lock.released':
      what = `lock released: ${list(d.paths)} (held by ${String(d.agent ?? '?')}, ${String(d.reason ?? 'released')})`;
      break;
    case 'handoff.created':
      what = `handoff offered${d.from !== undefined ? ` by ${String(d.from)}` : by}: ${e.subject ?? ''} (${String(d.tasks ?? 0)} tasks) — handoff_accept it`;
      break;
    case 'task.lease_expired':
      what = `lease expired: task ${e.subject ?? ''} is ${String(d.status ?? 'back')} (your work on it is no longer fenced)`;
      break;
    case 'task.lease_transferred':
      what = `lease of task ${e.subject ?? ''} moved from ${String(d.from ?? '?')} to ${String(d.to ?? '?')}`;
      break;
    case 'lease.expiring':
      what = `lease of task ${e.subject ?? ''} expires at ${String(d.expires_at)} (in ${String(d.in_s)} s) — task_heartbeat it`;
      break;
    default:
      what = `${e.type} ${e.subject ?? ''}${by}`;
  }
  return printable(`${e.at} ${what}`);
}

/** Is this event about the watching agent (beyond what events_wait already filters)? */
export function concerns(e: WatchEvent, me: string): boolean {
  // A task created straight into `ready` is as claimable as one that became ready.
  if (e.type === 'task.created') return e.data?.status === 'ready';
  if (e.type === 'task.lease_expired') return e.data?.owner === me;
  if (e.type === 'task.lease_transferred') return e.data?.from === me || e.data?.to === me;
  return true;
}

function readCursor(file: string): string | undefined {
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8').trim();
  return text === '' ? undefined : text;
}

function writeCursor(file: string, cursor: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${cursor}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

interface HeldTask {
  id: string;
  lease: { expires_at: string } | null;
}

async function watch(flags: WatchFlags): Promise<void> {
  const leaseWarnMs = flags.leaseWarnS === undefined ? 60_000 : Number(flags.leaseWarnS) * 1000;
  if (!Number.isFinite(leaseWarnMs) || leaseWarnMs < 0 || leaseWarnMs > 86_400_000) {
    throw new BatonError('invalid_input', '--lease-warn-s: expected seconds between 0 and 86400');
  }
  if (flags.after !== undefined && (flags.after === '' || flags.after.length > 200)) throw new BatonError('invalid_input', '--after: expected a cursor');
  const project = flags.inProject ?? 'default';
  // The data dir is needed for the local hub, for --agent's key file, and for the default cursor file.
  const local = flags.url === undefined || flags.agent !== undefined || flags.cursorFile === undefined;
  const loc = local ? requireDataDir(locateConfig(flags, { logLevel: cliLogLevel() })) : null;
  const key = flags.agent !== undefined ? readTokenFile(tokenFileOf(loc!.dataDir, project, flags.agent)) : tokenFromEnv();
  if (key === undefined) {
    throw new BatonError('invalid_input', 'who is watching? pass --agent NAME (its key from `baton setup`), or set BATON_TOKEN or BATON_TOKEN_FILE');
  }
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let source: Source;
  if (flags.url !== undefined) source = httpSource(flags.url, key);
  else {
    const hub = await Hub.open(loc!.config);
    source = {
      call: (op, input, signal) => hub.call(op, input, hub.resolver(key), { requestId: hub.newRequestId(), transport: 'cli', ...(signal === undefined ? {} : { signal }) }),
      close: () => hub.close(),
    };
  }
  try {
    let me: { agent: { name: string; role: string }; project: { name: string } };
    for (let backoff = 500; ; backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)) {
      try {
        me = (await source.call('whoami', {})) as typeof me;
        break;
      } catch (err) {
        if (isBatonError(err) && err.code === 'unauthenticated') {
          throw new BatonError('unauthenticated', 'the key is not valid (revoked, expired or mistyped): run `baton setup <client>` again');
        }
        if (!isBatonError(err) || err.code !== 'unavailable' || stop.signal.aborted) throw err;
        process.stderr.write(printable(`baton watch: the hub is unavailable (${err.message}); retrying in ${Math.round(backoff / 1000)} s`) + '\n');
        await sleep(backoff, stop.signal);
        if (stop.signal.aborted) return;
      }
    }
    const cursorFile = flags.cursorFile ?? join(loc!.dataDir, 'agents', ...(project === 'default' ? [] : [project]), `${me.agent.name}.cursor`);
    let cursor = flags.after ?? readCursor(cursorFile);
    // "From now" is the events head when the watch starts, fixed before it says it is watching:
    // left to the first wait, an event between this line and that wait would be skipped.
    let announced = false;
    const announce = (from: string): void => {
      if (announced) return;
      announced = true;
      process.stderr.write(printable(`baton watch: ${me.agent.name} (${me.agent.role}, project ${me.project.name}), ${from}; cursor in ${cursorFile}`) + '\n');
    };
    if (cursor !== undefined) announce('resuming from the saved cursor');
    const out = (e: WatchEvent): void => {
      process.stdout.write((flags.json === true ? terminalJson(e) : describeEvent(e)) + '\n');
    };
    const warned = new Set<string>();
    let backoff = 500;
    while (!stop.signal.aborted) {
      try {
        // Leases about to expire: read each round (whoami), warned once per lease expiry.
        const who = (await source.call('whoami', {})) as { held_tasks: HeldTask[] };
        const now = Date.now();
        let nextWarn = ROUND_MS;
        for (const t of who.held_tasks) {
          if (t.lease === null) continue;
          const expires = Date.parse(t.lease.expires_at);
          const left = expires - now;
          const id = `${t.id}@${t.lease.expires_at}`;
          if (left <= leaseWarnMs && left > 0 && !warned.has(id)) {
            warned.add(id);
            out({ id: null, type: 'lease.expiring', subject: t.id, actor: null, data: { expires_at: t.lease.expires_at, in_s: Math.round(left / 1000) }, at: new Date(now).toISOString() });
          } else if (left > leaseWarnMs) nextWarn = Math.min(nextWarn, left - leaseWarnMs);
        }
        if (cursor === undefined) {
          const head = (await source.call('events_wait', { types: [...WATCHED_TYPES], wait_ms: 0, limit: 1 }, stop.signal)) as { cursor: string | null };
          if (head.cursor !== null) {
            cursor = head.cursor;
            writeCursor(cursorFile, cursor);
          }
          announce('from now');
        }
        const input: Record<string, unknown> = { types: [...WATCHED_TYPES], wait_ms: Math.max(1_000, nextWarn), limit: 100 };
        if (cursor !== undefined) input.after = cursor;
        const res = (await source.call('events_wait', input, stop.signal)) as { events: WatchEvent[]; cursor: string | null };
        for (const e of res.events) if (concerns(e, me.agent.name)) out(e);
        if (res.cursor !== null && res.cursor !== cursor) {
          cursor = res.cursor;
          writeCursor(cursorFile, cursor);
        }
        backoff = 500;
      } catch (err) {
        if (stop.signal.aborted) break;
        if (isBatonError(err) && err.code === 'cursor_expired') {
          const next = (err.details as { cursor?: unknown } | undefined)?.cursor;
          process.stderr.write('baton watch: events after the saved cursor were removed by retention; some were missed, continuing from the newest\n');
          cursor = typeof next === 'string' ? next : undefined;
          if (cursor !== undefined) writeCursor(cursorFile, cursor);
          continue;
        }
        if (isBatonError(err) && (err.code === 'unauthenticated' || err.code === 'invalid_input' || err.code === 'forbidden' || err.code === 'not_found')) {
          throw err;
        }
        const code = isBatonError(err) ? err.code : ((err as { code?: unknown } | null)?.code ?? 'error');
        process.stderr.write(`baton watch: the hub is unavailable (${String(code)}); retrying in ${Math.round(backoff / 1000)} s\n`);
        await sleep(backoff, stop.signal);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
    if (cursor !== undefined) writeCursor(cursorFile, cursor);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await source.close();
  }
}

export function registerWatchCommand(program: Command): void {
  program
    .command('watch')
    .description("Print one line per event that concerns an agent (mail, ready tasks, approvals, freed locks, handoffs, expiring leases); resumes from a saved cursor")
    .option('--agent <name>', 'watch as this agent, with the key `baton setup` stored for it (default: BATON_TOKEN / BATON_TOKEN_FILE)')
    .option('--in-project <name>', 'project of --agent (default: default)')
    .option('--json', 'one JSON object per line (the event as events_wait returns it)')
    .option('--after <cursor>', 'start after this cursor (default: the saved one, else now)')
    .option('--cursor-file <file>', 'where the cursor is saved (default: <data dir>/agents/<agent>.cursor)')
    .option('--lease-warn-s <seconds>', 'warn this long before a held lease expires', '60')
    .option('--url <url>', 'watch a hub over HTTP (e.g. http://127.0.0.1:7410, `baton serve`) instead of the data dir; retries while it is down')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .action(async (opts: WatchFlags) => watch(opts));
}
