import { useEffect, useRef, useState } from 'preact/hooks';

/**
 * S18, rendering side: every stored string is rendered as a text node (Preact never parses data
 * as HTML: no dangerouslySetInnerHTML anywhere), and display fields lose their control characters
 * (C0 but tab/newline, DEL, C1) and the invisible bidi and zero-width controls that can make text
 * read differently from what it is.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]/g;

export function clean(s: string | null | undefined): string {
  return s == null ? '' : s.replace(CONTROL, '');
}

/** One line: also newlines and tabs become spaces. */
export function line(s: string | null | undefined): string {
  return clean(s).replace(/[\t\n]+/g, ' ');
}

export function ago(iso: string | null | undefined, now: number): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  return `${span(now - t)} ago`;
}

export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d`;
}

/** The time left on a lease, or "expired". */
export function countdown(iso: string, now: number): string {
  const left = Date.parse(iso) - now;
  return left <= 0 ? 'expired' : span(left);
}

/** A clock that ticks every second while mounted (lease countdowns). */
export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

export interface Loaded<T> {
  data: T | null;
  error: string | null;
  reload: () => void;
}

/**
 * Loads data, and loads it again whenever `version` changes (a live event arrived) or a
 * dependency does. Refetches coalesce: at most one in flight, one queued.
 */
export function useLoad<T>(fn: () => Promise<T>, deps: readonly unknown[], version: number): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [nudge, setNudge] = useState(0);
  const state = useRef({ running: false, again: false, alive: true, fn });
  state.current.fn = fn;
  useEffect(() => {
    state.current.alive = true;
    return () => {
      state.current.alive = false;
    };
  }, []);
  useEffect(() => {
    const st = state.current;
    const run = async (): Promise<void> => {
      if (st.running) {
        st.again = true;
        return;
      }
      st.running = true;
      try {
        do {
          st.again = false;
          try {
            const v = await st.fn();
            if (!st.alive) return;
            setData(v);
            setError(null);
          } catch (e) {
            if (!st.alive) return;
            setError(e instanceof Error ? e.message : 'failed to load');
          }
        } while (st.again);
      } finally {
        st.running = false;
      }
    };
    void run();
  }, [...deps, version, nudge]);
  return { data, error, reload: () => setNudge((n) => n + 1) };
}
