import type { IncomingMessage, ServerResponse } from 'node:http';
import { looksLikeJwt } from '../../auth/jwt.js';
import type { Principal } from '../../auth/principal.js';
import { audiencesOf } from '../../core/audience.js';
import { decodePosition } from '../../core/cursor.js';
import { BatonError, isBatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { viewEvents } from '../../ops/events.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import { eventsAfter, lastEventId, type EventRow } from '../../store/journal.js';
import { eventHorizon } from '../../store/retention.js';
import { keysById, liveFamilies, touchWebSession, webSessionsByHash } from '../../store/web-sessions.js';
import { clientAddress, credentialOf } from './auth-routes.js';
import { cookieAuthOf, refuseAfterCookie, touchIntervalMs } from './session.js';

/**
 * `GET /api/v1/events/stream`: Server-Sent Events for browsers and integrations (issue 10).
 *
 * Each event is `id: <cursor>`, `event: <type>`, `data: <the event as events_wait returns it>`
 * (ops/events.ts `viewEvents`: the same sealed ids, actor names and data). The id is the
 * `events_wait` cursor after that event, so a client resumes with `Last-Event-ID` (what
 * EventSource sends on reconnect) or `?after=`; `?types=a.b,c.d` narrows the types. Without a
 * cursor the stream starts from now. A session-cookie stream also needs `?csrf=<the session token>`
 * (EventSource cannot set headers; the cookie alone authorizes nothing, see session.ts).
 *
 * Visibility is `events_wait`'s: a viewer gets the rows whose audience is one of
 * `audiencesOf(viewer)` — the same function, the same `eventsAfter` statement. Unlike
 * `events_wait`, the stream does not narrow to what is "relevant" to the viewer (a dashboard shows
 * the whole board) and includes the viewer's own actions (a decision made in the browser shows up).
 *
 * Opening a stream goes through the one door: it calls `events_wait` (no wait, one event) as the
 * viewer, so authentication (bearer or session cookie), the rate limit, authorization, validation
 * of `after` and `types`, audit, and the expired-cursor check are the op's own. An expired cursor
 * (retention removed events after it) opens the stream with `event: reset` whose data and id give
 * the newest cursor: the client resyncs its state and continues from there.
 *
 * Fan-out: one loop for all streams, woken by the Bus doorbell (so writes from other processes
 * sharing the SQLite file are seen too). Per ring, per project: one read transaction reads the
 * events after the oldest cursor among that project's streams (audience in the union of their
 * audiences, 500 at a time), re-checks every viewer's key (and session) in one statement each,
 * and formats each event's frame once; then each stream gets the frames it may see, with ids above
 * its own cursor. So 1,000 viewers of a project cost one read per ring, not 1,000
 * (bench/stream-fanout.ts).
 *
 * Bounds: `streamMaxPerPrincipal` and `streamMaxTotal` open streams (429 beyond); a stream whose
 * unsent output passes `streamBufferBytes` (its consumer is not reading) gets `event: error`
 * `{"reason":"slow_consumer"}` and is closed, never buffered without bound. A comment line every
 * `streamHeartbeatMs` keeps proxies from closing idle streams; `retry: 2000` tells EventSource how
 * soon to reconnect. A revoked key, an expired access token or its revoked refresh family, or an ended session closes its streams at the next ring with
 * `event: error` `{"reason":"unauthenticated"}`. Draining closes every stream with `event: error`
 * `{"reason":"shutting_down"}`.
 */
const PAGE = 500;
const RETRY_MS = 2_000;
/** A closed stream's socket is destroyed if its last bytes are not taken within this (a consumer not reading). */
const END_GRACE_MS = 5_000;
/** The loop re-checks viewers at least this often even with no ring (a key revoked by another process without an event). */
const IDLE_ROUND_MS = 30_000;

interface Viewer {
  res: ServerResponse;
  principal: Principal;
  audiences: ReadonlySet<string>;
  types: ReadonlySet<string> | null;
  cursor: number;
  /** The session hash when authenticated by cookie. */
  session: string | null;
  /** When the credential itself expires (an access token's `exp`); a key's expiry is read from the store. */
  expiresAt: number;
  /** The refresh family an access token was issued from: it dies with the family (S4). */
  family: string | null;
  closed: boolean;
}

interface Frame {
  id: number;
  audience: string;
  type: string;
  text: string;
}

export interface StreamStats {
  open: number;
  /** Rounds run (one read per project with viewers). */
  rounds: number;
  /** Events written to streams (one per viewer per event). */
  sent: number;
  /** Streams closed for not reading. */
  slow: number;
}

/**
 * An access token's `exp` (in ms) and refresh family (`fam`): its signature and claims were
 * checked when the stream opened; these say when, and with what, it stops being valid.
 */
function tokenLimits(jwt: string): { expiresAt: number; family: string | null } {
  try {
    const claims = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown; fam?: unknown };
    return {
      expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : Number.POSITIVE_INFINITY,
      family: typeof claims.fam === 'string' ? claims.fam : null,
    };
  } catch {
    return { expiresAt: Number.POSITIVE_INFINITY, family: null };
  }
}

export class EventStreams {
  private readonly projects = new Map<string, Set<Viewer>>();
  private readonly perPrincipal = new Map<string, number>();
  private open = 0;
  private running = false;
  private kick: AbortController | null = null;
  private dirty = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private closing = false;
  readonly stats: StreamStats = { open: 0, rounds: 0, sent: 0, slow: 0 };
  /** Told how long each project's round took (read, format, write to every viewer), in ms: metrics. */
  onRound: ((ms: number) => void) | null = null;

  constructor(private readonly hub: Hub) {}

  /** Answers the stream route; false for any other path. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, query: string, requestId: string, onAuthenticated: () => void): Promise<boolean> {
    if (path !== '/api/v1/events/stream') return false;
    if (req.method !== 'GET') return await refuseAfterCookie(this.hub, req, new BatonError('invalid_input', 'method not allowed here'));
    if (this.closing) throw new BatonError('shutting_down', 'the server is shutting down; retry shortly');
    const hub = this.hub;
    const q = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query);
    for (const k of q.keys()) if (k !== 'after' && k !== 'types' && k !== 'csrf') throw new BatonError('invalid_input', `unknown query parameter ${k}`);
    if (q.getAll('after').length > 1 || q.getAll('types').length > 1 || q.getAll('csrf').length > 1) {
      throw new BatonError('invalid_input', 'after, types and csrf may be given once');
    }
    const lastId = req.headers['last-event-id'];
    const after = typeof lastId === 'string' && lastId !== '' ? lastId : (q.get('after') ?? undefined);
    const typesParam = q.get('types');
    const types = typesParam === null ? undefined : typesParam.split(',').filter((t) => t !== '');

    // EventSource cannot set headers: a cookie stream presents the session token as `?csrf=`
    // (or the header, for a fetch()-based client). No log line records a request's URL.
    const cookie = cookieAuthOf(hub, req, q.get('csrf') ?? undefined);
    if (cookie === null && q.has('csrf')) throw new BatonError('invalid_input', 'csrf is for a session cookie stream only');
    const credential = cookie === null ? credentialOf(hub, req, requestId) : null;
    const resolve: ResolvePrincipal = cookie !== null ? cookie.resolver : hub.resolver(credential!);
    let principal: Principal | null = null;
    const who: ResolvePrincipal = async (ex) => (principal = await resolve(ex));
    let reset: string | null = null;
    try {
      // The door: authentication, rate limit, authorization, validation, audit, cursor expiry.
      await hub.call('events_wait', { ...(after === undefined ? {} : { after }), ...(types === undefined ? {} : { types }), limit: 1 }, who, {
        requestId,
        transport: 'rest',
        address: clientAddress(req),
      });
    } catch (err) {
      if (!(isBatonError(err) && err.code === 'cursor_expired' && typeof err.details?.cursor === 'string')) throw err;
      reset = err.details.cursor;
    } finally {
      await cookie?.settle();
    }
    const p = principal as Principal | null;
    if (p === null) throw new BatonError('unauthenticated', 'missing or invalid credentials');
    onAuthenticated();

    const key = p.agentId;
    const mine = this.perPrincipal.get(key) ?? 0;
    const c = hub.config;
    if (mine >= c.streamMaxPerPrincipal) {
      throw new BatonError('rate_limited', `too many open event streams for this principal (at most ${c.streamMaxPerPrincipal}); close one first`, {
        retry_after_s: 5,
      });
    }
    if (this.open >= c.streamMaxTotal) throw new BatonError('rate_limited', 'too many open event streams on this server; retry later', { retry_after_s: 5 });

    // Counted before the next await, so concurrent opens cannot pass the cap together.
    this.perPrincipal.set(key, mine + 1);
    this.open++;
    this.stats.open = this.open;
    const seal = hub.positionSeal(p.projectId);
    const from = reset ?? after;
    let cursor: number;
    try {
      cursor =
        from === undefined
          ? await hub.db.read((ex) => lastEventId(ex, p.projectId))
          : from === 'start'
            ? await hub.db.read((ex) => eventHorizon(ex, p.projectId))
            : decodePosition('events', from, seal); // validated by events_wait above
    } catch (err) {
      this.release(key);
      throw err;
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-request-id': requestId,
    });
    res.write(`retry: ${RETRY_MS}\n\n`);
    if (reset !== null) res.write(`id: ${reset}\nevent: reset\ndata: ${JSON.stringify({ cursor: reset, reason: 'cursor_expired' })}\n\n`);
    const viewer: Viewer = {
      res,
      principal: p,
      audiences: new Set(audiencesOf(p)),
      types: types === undefined ? null : new Set(types),
      cursor,
      session: cookie?.hash ?? null,
      ...(credential?.token !== undefined && looksLikeJwt(credential.token)
        ? tokenLimits(credential.token)
        : { expiresAt: Number.POSITIVE_INFINITY, family: null }),
      closed: false,
    };
    if (res.destroyed) {
      // The client left while the stream was being opened.
      this.release(p.agentId);
      return true;
    }
    let group = this.projects.get(p.projectId);
    if (group === undefined) {
      group = new Set();
      this.projects.set(p.projectId, group);
    }
    group.add(viewer);
    res.on('close', () => this.remove(viewer));
    this.start();
    return true;
  }

  /** Open streams (metrics). */
  get count(): number {
    return this.open;
  }

  /** Closes every stream (draining): `event: error` `{"reason":"shutting_down"}`, then the end. */
  close(): void {
    this.closing = true;
    for (const group of this.projects.values()) for (const v of group) this.end(v, 'shutting_down', 'the server is shutting down; reconnect shortly');
    this.stopHeartbeat();
    this.kick?.abort();
  }

  private remove(v: Viewer): void {
    const group = this.projects.get(v.principal.projectId);
    if (group === undefined || !group.delete(v)) return;
    v.closed = true;
    if (group.size === 0) this.projects.delete(v.principal.projectId);
    this.release(v.principal.agentId);
  }

  private release(agentId: string): void {
    const n = (this.perPrincipal.get(agentId) ?? 1) - 1;
    if (n <= 0) this.perPrincipal.delete(agentId);
    else this.perPrincipal.set(agentId, n);
    this.open--;
    this.stats.open = this.open;
    if (this.open === 0) this.stopHeartbeat();
  }

  /** A final `event: error` with the reason, then the end; the socket is destroyed if the client does not take it. */
  private end(v: Viewer, reason: string, message: string): void {
    if (v.closed) return;
    this.remove(v);
    const res = v.res;
    if (res.destroyed) return;
    res.end(`event: error\ndata: ${JSON.stringify({ reason, message })}\n\n`);
    setTimeout(() => res.destroy(), END_GRACE_MS).unref();
  }

  /** Writes to one stream, closing it when its consumer has fallen too far behind. */
  private write(v: Viewer, text: string): void {
    if (v.closed) return;
    if (v.res.writableLength > this.hub.config.streamBufferBytes) {
      this.stats.slow++;
      this.end(v, 'slow_consumer', 'the client did not read the stream fast enough; reconnect with Last-Event-ID');
      return;
    }
    v.res.write(text);
  }

  private start(): void {
    if (this.heartbeat === null) {
      this.heartbeat = setInterval(() => {
        for (const group of this.projects.values()) for (const v of group) this.write(v, ': ping\n\n');
      }, this.hub.config.streamHeartbeatMs);
      this.heartbeat.unref();
    }
    this.dirty = true;
    if (this.running) {
      this.kick?.abort();
      return;
    }
    this.running = true;
    void this.loop();
  }

  private stopHeartbeat(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** With cookie streams open, rounds come often enough to refresh their sessions before the idle limit. */
  private idleRoundMs(): number {
    for (const group of this.projects.values()) {
      for (const v of group) if (v.session !== null) return Math.max(1_000, Math.min(IDLE_ROUND_MS, this.hub.config.sessionIdleMs / 3));
    }
    return IDLE_ROUND_MS;
  }

  private async loop(): Promise<void> {
    const { hub } = this;
    while (this.open > 0 && !this.closing) {
      try {
        const mark = await hub.bus.mark();
        this.dirty = false;
        for (const [projectId, group] of [...this.projects]) await this.round(projectId, group);
        if (this.dirty || this.open === 0 || this.closing) continue;
        this.kick = new AbortController();
        await hub.bus.wait(this.idleRoundMs(), this.kick.signal, mark);
      } catch (err) {
        // A failed read (busy store, a fault) is tried again shortly; the streams stay open.
        hub.log.warn({ err }, 'event stream round failed');
        this.kick = new AbortController();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1_000);
          timer.unref();
          this.kick!.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      } finally {
        this.kick = null;
      }
    }
    this.running = false;
  }

  /** One project: read after the oldest cursor (a page at a time), re-check viewers, send. */
  private async round(projectId: string, group: Set<Viewer>): Promise<void> {
    const { hub } = this;
    const seal = hub.positionSeal(projectId);
    for (;;) {
      const viewers = [...group].filter((v) => !v.closed);
      if (viewers.length === 0) return;
      let from = Number.POSITIVE_INFINITY;
      const audiences = new Set<string>();
      const tokens = new Set<string>();
      const sessions = new Set<string>();
      const families = new Set<string>();
      for (const v of viewers) {
        if (v.family !== null) families.add(v.family);
        from = Math.min(from, v.cursor);
        for (const a of v.audiences) audiences.add(a);
        if (v.session !== null) sessions.add(v.session);
        // A session's key too: revoking the key ends its cookie streams, not only its bearer ones.
        if (v.principal.tokenId !== null) tokens.add(v.principal.tokenId);
      }
      const now = hub.clock.now();
      const started = performance.now();
      const read = await hub.db.read(async (ex) => {
        const rows = await eventsAfter(ex, projectId, [...audiences], from, PAGE);
        const keys = await keysById(ex, [...tokens]);
        const live = await webSessionsByHash(ex, [...sessions]);
        const fams = await liveFamilies(ex, [...families]);
        const view = await viewEvents(ex, seal, rows);
        return { rows, keys, live, fams, view };
      });
      this.stats.rounds++;
      // Viewers whose key was revoked or expired, or whose session ended, are closed before anything is sent.
      const deadKeys = new Set(tokens);
      for (const k of read.keys) if (k.revoked_at === null && (k.expires_at === null || k.expires_at > now)) deadKeys.delete(k.id);
      const idleMs = hub.config.sessionIdleMs;
      const liveRows = read.live.filter((s) => s.expires_at > now && s.last_seen_at > now - idleMs);
      const liveSessions = new Set(liveRows.map((s) => s.id_hash));
      // An open stream is use of its session (the dashboard left open in a tab): refreshed like a
      // request, at most once a minute, so the stream does not lapse at the idle limit.
      const due = liveRows.filter((s) => now - s.last_seen_at >= touchIntervalMs(idleMs)).map((s) => s.id_hash);
      if (due.length > 0) {
        try {
          await hub.db.write(async (ex) => {
            for (const h of due) await touchWebSession(ex, h, now);
          });
        } catch (err) {
          hub.log.warn({ err }, 'session refresh failed'); // best effort: a failure only shortens the session
        }
      }
      for (const v of viewers) {
        const dead =
          now >= v.expiresAt ||
          (v.family !== null && !read.fams.has(v.family)) ||
          (v.session !== null && !liveSessions.has(v.session)) ||
          (v.principal.tokenId !== null && deadKeys.has(v.principal.tokenId));
        if (dead) this.end(v, 'unauthenticated', 'the credential of this stream was revoked or expired');
      }
      const frames = read.rows.map((r: EventRow, i): Frame => {
        const e = read.view.events[i]!;
        return { id: r.id, audience: r.audience, type: r.type, text: `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n` };
      });
      const last = read.rows.at(-1)?.id;
      for (const v of viewers) {
        if (v.closed) continue;
        let out = '';
        for (const f of frames) {
          if (f.id <= v.cursor || !v.audiences.has(f.audience) || (v.types !== null && !v.types.has(f.type))) continue;
          out += f.text;
          this.stats.sent++;
        }
        if (last !== undefined && last > v.cursor) v.cursor = last;
        if (out !== '') this.write(v, out);
      }
      if (read.rows.length > 0) this.onRound?.(performance.now() - started);
      if (read.rows.length < PAGE) return;
    }
  }
}
