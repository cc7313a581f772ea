import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, TASK_STATES as ALL_STATES, login, logout, resume, setUnauthenticatedHandler, type Session } from './api';
import { columnsOf } from './columns';
import { follow, type LiveState } from './live';
import { line } from './util';
import {
  AgentsView, ApprovalsView, AuditView, BoardView, KeysView, LocksView, MessagesView, PlanView, SessionsView, TaskView,
  type ViewProps,
} from './views';

interface Route {
  name: string;
  arg: string;
}

function parseHash(): Route {
  const h = location.hash.replace(/^#\/?/, '');
  const [name = '', ...rest] = h.split('/');
  return { name: name || 'board', arg: decodeURIComponent(rest.join('/')) };
}

/** Nav entries; each is offered only when the session may call the op that fills it. */
const NAV: { name: string; label: string; op: string }[] = [
  { name: 'board', label: 'Board', op: 'task_list' },
  { name: 'agents', label: 'Agents', op: 'agent_list' },
  { name: 'messages', label: 'Messages', op: 'message_search' },
  { name: 'locks', label: 'Locks', op: 'lock_list' },
  { name: 'sessions', label: 'Sessions', op: 'handoff_list' },
  { name: 'approvals', label: 'Approvals', op: 'approval_list' },
  { name: 'audit', label: 'Audit', op: 'audit_query' },
  { name: 'keys', label: 'Keys', op: 'token_list' },
  { name: 'plan', label: 'Plan', op: 'plan_get' },
];

function Login({ onSession }: { onSession: (s: Session) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await login(key.trim());
      setKey('');
      onSession(s);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'That key was not accepted.' : err instanceof Error ? err.message : 'Login failed.');
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>Baton</h1>
      <form onSubmit={(e) => void submit(e)}>
        <label for="key">API key</label>
        <input id="key" name="key" type="password" autocomplete="off" spellcheck={false} value={key} onInput={(e) => setKey(e.currentTarget.value)} placeholder="bat_…" required />
        <button type="submit" disabled={busy || key.trim() === ''}>Sign in</button>
        {error && <p class="error" role="alert">{error}</p>}
        <p class="hint">The key is exchanged for a session cookie; the page does not keep it.</p>
      </form>
    </main>
  );
}

function Shell({ session, onLogout, onSignedOut }: { session: Session; onLogout: () => void; onSignedOut: () => void }) {
  const [route, setRoute] = useState(parseHash());
  const [version, setVersion] = useState(0);
  const [columns, setColumns] = useState<Readonly<Record<string, number>>>({});
  const [live, setLive] = useState<LiveState>('connecting');
  useEffect(() => {
    const on = (): void => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  useEffect(() => {
    // Events are gathered until the next frame, then bump the version (and the columns they
    // touch) once: a claim storm of hundreds of events a second costs at most one render per
    // frame, and a lone event waits at most a frame. useLoad then keeps at most one refetch in
    // flight and one queued per view.
    let touched = new Set<string>();
    let frame: number | null = null;
    const flush = (): void => {
      frame = null;
      const cols = touched;
      touched = new Set();
      setVersion((v) => v + 1);
      if (cols.size > 0) setColumns((c) => Object.fromEntries(ALL_STATES.map((s) => [s, (c[s] ?? 0) + (cols.has(s) ? 1 : 0)])));
    };
    const h = follow({
      onEvent: (e) => {
        for (const s of columnsOf(e)) touched.add(s);
        frame ??= requestAnimationFrame(flush);
      },
      onState: setLive,
      onSignedOut,
    });
    return () => {
      h.stop();
      if (frame !== null) cancelAnimationFrame(frame);
    };
  }, []);
  const can = (op: string): boolean => session.ops.includes(op);
  const props: ViewProps = { session, can, version, columns, arg: route.arg };
  const nav = NAV.filter((n) => can(n.op));
  let view;
  switch (route.name) {
    case 'task': view = <TaskView {...props} />; break;
    case 'agents': view = <AgentsView {...props} />; break;
    case 'messages': view = <MessagesView {...props} />; break;
    case 'locks': view = <LocksView {...props} />; break;
    case 'sessions': view = <SessionsView {...props} />; break;
    case 'approvals': view = <ApprovalsView {...props} />; break;
    case 'audit': view = <AuditView {...props} />; break;
    case 'keys': view = <KeysView {...props} />; break;
    case 'plan': view = <PlanView {...props} />; break;
    default: view = <BoardView {...props} />;
  }
  const current = route.name === 'task' ? 'board' : route.name;
  return (
    <div class="shell">
      <header>
        <a class="brand" href="#/board">Baton</a>
        <nav aria-label="Views">
          {nav.map((n) => (
            <a key={n.name} href={`#/${n.name}`} aria-current={current === n.name ? 'page' : undefined}>{n.label}</a>
          ))}
        </nav>
        <span class={`live live-${live}`} data-testid="live" title="event stream">{live}</span>
        <span class="who">
          {line(session.agent)} · {line(session.role)} · {line(session.project)}
        </span>
        <button type="button" class="quiet" onClick={onLogout}>Sign out</button>
      </header>
      <main id="view">{view}</main>
    </div>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  useEffect(() => {
    setUnauthenticatedHandler(() => setSession(null));
    resume().then(setSession, () => setSession(null));
  }, []);
  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null) return <Login onSession={setSession} />;
  return (
    <Shell
      session={session}
      onSignedOut={() => setSession(null)}
      onLogout={() => {
        void logout().finally(() => setSession(null));
      }}
    />
  );
}

render(<App />, document.getElementById('app')!);
