import { sessionToken, type HubEvent } from './api';

/** Every event type the hub emits (src/ops); the SSE stream names each event by its type. */
export const EVENT_TYPES = [
  'task.created', 'task.claimed', 'task.started', 'task.done', 'task.ready', 'task.failed', 'task.retry',
  'task.cancelled', 'task.blocked', 'task.updated', 'task.lease_expired', 'task.lease_transferred',
  'lock.acquired', 'lock.released', 'lock.renewed', 'approval.requested', 'approval.decided',
  'message.received', 'message.acked', 'session.started', 'session.checkpoint', 'session.ended',
  'handoff.created', 'handoff.accepted', 'plan.updated', 'memory.set', 'memory.deleted',
  'discovery.added', 'decision.recorded', 'token.created', 'token.revoked',
] as const;

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'stopped';

export interface LiveHandle {
  stop(): void;
}

export interface LiveCallbacks {
  /** An event (or null: "resync everything", after a (re)connect or a reset). */
  onEvent(e: HubEvent | null): void;
  onState(s: LiveState): void;
  /** The session is gone (revoked key, logout elsewhere, expiry): back to the login form. */
  onSignedOut(): void;
}

/**
 * Follows the hub through the SSE stream at /api/v1/events/stream (session cookie + ?csrf=). EventSource
 * resends Last-Event-ID on its own reconnects (the hub's `retry: 2000`); when a reconnect is
 * refused outright (the hub restarting answers nothing or 503, and EventSource gives up), a new
 * EventSource resumes with ?after=<last id>, so nothing is lost across a restart. Every (re)open
 * asks the views to refetch, so whatever happened while away is shown.
 */
export function follow(cb: LiveCallbacks): LiveHandle {
  let stopped = false;
  let last: string | null = null;
  let source: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const handle = (ev: MessageEvent<string>): void => {
    if (ev.lastEventId) last = ev.lastEventId;
    try {
      cb.onEvent(JSON.parse(ev.data) as HubEvent);
    } catch {
      cb.onEvent(null);
    }
  };

  const close = (): void => {
    source?.close();
    source = null;
  };

  /** After a refused (re)connect: signed out (401 on the session) or try again in 2 s. */
  const retry = (): void => {
    close();
    if (stopped) return;
    cb.onState('reconnecting');
    timer = setTimeout(() => {
      fetch('/api/v1/session', { credentials: 'same-origin', headers: { 'x-csrf-token': sessionToken() } })
        .then((r) => {
          if (r.status === 401 || r.status === 403) {
            stopped = true;
            cb.onSignedOut();
          } else open();
        })
        .catch(retry);
    }, 2000);
  };

  const open = (): void => {
    if (stopped) return;
    // The session token as ?csrf= (EventSource cannot set headers; the hub logs no URLs). EventSource
    // keeps this URL for its own reconnects, adding Last-Event-ID.
    const q = new URLSearchParams({ csrf: sessionToken() });
    if (last !== null) q.set('after', last);
    const es = new EventSource(`/api/v1/events/stream?${q.toString()}`, { withCredentials: true });
    source = es;
    es.onopen = () => {
      cb.onState('live');
      cb.onEvent(null);
    };
    for (const t of EVENT_TYPES) es.addEventListener(t, handle as EventListener);
    es.onmessage = handle;
    // The cursor is older than what the hub keeps: resync, go on from the newest.
    es.addEventListener('reset', ((ev: MessageEvent<string>) => {
      if (ev.lastEventId) last = ev.lastEventId;
      cb.onEvent(null);
    }) as EventListener);
    // Both the hub's `event: error` (a reason, then the stream ends) and EventSource's own errors.
    es.addEventListener('error', ((ev: Event) => {
      if (stopped) return;
      const reason = ev instanceof MessageEvent ? parseReason(ev.data) : null;
      if (reason === 'unauthenticated') {
        stopped = true;
        close();
        cb.onSignedOut();
        return;
      }
      if (reason !== null || es.readyState === EventSource.CLOSED) retry();
      else cb.onState('reconnecting'); // EventSource reconnects by itself, with Last-Event-ID
    }) as EventListener);
  };

  cb.onState('connecting');
  open();
  return {
    stop() {
      stopped = true;
      close();
      if (timer !== null) clearTimeout(timer);
      cb.onState('stopped');
    },
  };
}

function parseReason(data: unknown): string | null {
  if (typeof data !== 'string') return null;
  try {
    const r = (JSON.parse(data) as { reason?: unknown }).reason;
    return typeof r === 'string' ? r : 'error';
  } catch {
    return 'error';
  }
}
