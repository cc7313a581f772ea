import { ApiError, get, type HubEvent } from './api';

/** Every event type the hub emits (src/ops); the SSE stream names each event by its type. */
export const EVENT_TYPES = [
  'task.created', 'task.claimed', 'task.started', 'task.done', 'task.ready', 'task.failed', 'task.retry',
  'task.cancelled', 'task.blocked', 'task.updated', 'task.lease_expired', 'task.lease_transferred',
  'lock.acquired', 'lock.released', 'lock.renewed', 'approval.requested', 'approval.decided',
  'message.received', 'message.acked', 'session.started', 'session.checkpoint', 'session.ended',
  'handoff.created', 'handoff.accepted', 'plan.updated', 'memory.set', 'memory.deleted',
  'discovery.added', 'decision.recorded', 'token.created', 'token.revoked',
] as const;

/** The long-poll fallback may name at most 20 types: the ones the views show. */
const POLL_TYPES = [
  'task.created', 'task.claimed', 'task.started', 'task.done', 'task.ready', 'task.failed', 'task.retry',
  'task.cancelled', 'task.blocked', 'task.updated', 'task.lease_expired', 'lock.acquired', 'lock.released',
  'approval.requested', 'approval.decided', 'message.received', 'session.started', 'session.checkpoint',
  'handoff.created', 'plan.updated',
];

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'stopped';

export interface LiveHandle {
  stop(): void;
}

/**
 * Follows the hub: the SSE stream at /api/v1/events/stream (EventSource resends Last-Event-ID on
 * its own reconnects; after a refused reconnect — the hub restarting answers 503 or nothing — a
 * new EventSource resumes with ?after=<last id>, so nothing is lost across a restart). When the
 * hub has no stream route (404) it long-polls events_wait instead.
 */
export function follow(onEvent: (e: HubEvent | null) => void, onState: (s: LiveState) => void): LiveHandle {
  let stopped = false;
  let last: string | null = null;
  let source: EventSource | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const abort = new AbortController();

  const handle = (ev: MessageEvent<string>): void => {
    if (ev.lastEventId) last = ev.lastEventId;
    try {
      onEvent(JSON.parse(ev.data) as HubEvent);
    } catch {
      onEvent(null);
    }
  };

  const openStream = (): void => {
    if (stopped) return;
    const url = `/api/v1/events/stream${last === null ? '' : `?after=${encodeURIComponent(last)}`}`;
    const es = new EventSource(url, { withCredentials: true });
    source = es;
    es.onopen = () => {
      onState('live');
      onEvent(null); // resync: whatever happened while away is refetched
    };
    es.onmessage = handle;
    for (const t of EVENT_TYPES) es.addEventListener(t, handle as EventListener);
    // The hub says our cursor is too old: refetch everything, go on from the newest.
    es.addEventListener('reset', ((ev: MessageEvent<string>) => {
      try {
        const c = (JSON.parse(ev.data) as { cursor?: string }).cursor;
        if (typeof c === 'string') last = c;
      } catch {
        /* keep the old cursor */
      }
      onEvent(null);
    }) as EventListener);
    es.onerror = () => {
      if (stopped) return;
      onState('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        source = null;
        timer = setTimeout(openStream, 2000);
      }
    };
  };

  const poll = async (): Promise<void> => {
    let cursor: string | undefined;
    // After a start or an error the first call does not wait: the page is live (and resynced) at once.
    let fresh = true;
    while (!stopped) {
      try {
        const out = await get<{ events: HubEvent[]; cursor: string }>(
          '/events',
          { types: POLL_TYPES, wait_ms: fresh ? 0 : 25_000, ...(cursor ? { after: cursor } : {}) },
          abort.signal,
        );
        if (fresh) {
          onState('live');
          onEvent(null);
          fresh = false;
        }
        cursor = out.cursor;
        for (const e of out.events) onEvent(e);
      } catch (e) {
        if (stopped) return;
        if (e instanceof ApiError && e.code === 'cursor_expired') cursor = undefined;
        fresh = true;
        onState('reconnecting');
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  };

  onState('connecting');
  // One probe decides the transport: a hub without the stream route answers 404.
  fetch('/api/v1/events/stream', { method: 'GET', credentials: 'same-origin', signal: abort.signal, headers: { accept: 'text/event-stream' } })
    .then(async (res) => {
      const status = res.status;
      await res.body?.cancel().catch(() => undefined);
      if (stopped) return;
      if (status === 404) void poll();
      else openStream();
    })
    .catch(() => {
      if (!stopped) openStream();
    });

  return {
    stop() {
      stopped = true;
      abort.abort();
      source?.close();
      if (timer !== null) clearTimeout(timer);
      onState('stopped');
    },
  };
}
