import { useState } from 'preact/hooks';
import {
  ApiError, TASK_STATES, call, get,
  type Agent, type Approval, type AuditRow, type Handoff, type HubEvent, type LockRow, type Message, type Plan,
  type Session, type Task, type TaskState, type TaskSummary, type Token,
} from './api';
import { ago, clean, countdown, line, useLoad, useNow } from './util';

export interface ViewProps {
  session: Session;
  can: (op: string) => boolean;
  /** Bumped on every live event: views refetch. */
  version: number;
  /** Per board column: bumped by the events that can change it (columns.ts). */
  columns: Readonly<Record<string, number>>;
  arg: string;
}

function Err({ error }: { error: string | null }) {
  return error ? <p class="error" role="alert">{line(error)}</p> : null;
}

/** Runs a write, shows its error; returns whether it succeeded. */
function useAction(): [string | null, (fn: () => Promise<unknown>) => Promise<boolean>] {
  const [error, setError] = useState<string | null>(null);
  const run = async (fn: () => Promise<unknown>): Promise<boolean> => {
    setError(null);
    try {
      await fn();
      return true;
    } catch (e) {
      setError(e instanceof ApiError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : 'failed');
      return false;
    }
  };
  return [error, run];
}

const TaskLink = ({ id, children }: { id: string; children?: preact.ComponentChildren }) => (
  <a href={`#/task/${encodeURIComponent(id)}`}>{children ?? line(id)}</a>
);

// ---------------------------------------------------------------- board

/** A column shows its first page (200 tasks, the op's page size) and loads more on demand: a 10,000-task board stays cheap. */
function Column({ state, version, now, total }: { state: TaskState; version: number; now: number; total: number | undefined }) {
  const [pages, setPages] = useState(1);
  const { data, error } = useLoad(
    async () => {
      const tasks: TaskSummary[] = [];
      let cursor: string | undefined;
      let more = false;
      for (let i = 0; i < pages; i++) {
        const out = await get<{ tasks: TaskSummary[]; next_cursor: string | null }>('/tasks', { status: [state], limit: 200, ...(cursor ? { cursor } : {}) });
        tasks.push(...out.tasks);
        more = out.next_cursor !== null;
        if (out.next_cursor === null) break;
        cursor = out.next_cursor;
      }
      return { tasks, more };
    },
    [state, pages],
    version,
  );
  return (
    <section class={`column col-${state}`} aria-label={state} data-state={state}>
      <h2>
        {state}{' '}
        <span class="count" title={data?.more ? `${data.tasks.length} shown` : undefined}>
          {data ? (data.more ? `${data.tasks.length} of ${total ?? `${data.tasks.length}+`}` : String(data.tasks.length)) : ''}
        </span>
      </h2>
      <Err error={error} />
      <ol class="cards">
        {data?.tasks.map((t) => (
          <li key={t.id} class="card" data-task={t.id}>
            <TaskLink id={t.id}>
              <span class="title">{line(t.title)}</span>
            </TaskLink>
            <span class="meta">
              <span class="prio" title="priority">P{t.priority}</span>
              {t.attempts > 0 && <span class="attempts" title="attempts">{t.attempts}×</span>}
              {t.lease ? (
                <span class="holder" title={`lease expires ${t.lease.expires_at}`}>
                  {line(t.lease.owner)} · <span class="countdown">{countdown(t.lease.expires_at, now)}</span>
                </span>
              ) : t.assignee ? (
                <span class="holder">→ {line(t.assignee)}</span>
              ) : null}
              {t.labels.map((l) => <span key={l} class="label">{line(l)}</span>)}
            </span>
            {state === 'blocked' && <Deps id={t.id} updated={t.updated_at} />}
          </li>
        ))}
      </ol>
      {data?.more && (
        <button type="button" class="quiet" onClick={() => setPages((p) => p + 1)}>Show more</button>
      )}
    </section>
  );
}

const depCache = new Map<string, { id: string; title: string }[]>();
const titleCache = new Map<string, string>();

/**
 * What a blocked task waits on, by title (task_get; cached per task version, titles per id; first
 * 5 shown). The dependencies' states are on their own cards: refetching them for every blocked
 * card on every event would cost a 10,000-task board hundreds of reads per event.
 */
function Deps({ id, updated }: { id: string; updated: string }) {
  const key = `${id}@${updated}`;
  const { data } = useLoad(
    async () => {
      const hit = depCache.get(key);
      if (hit) return hit;
      const { task } = await get<{ task: Task }>(`/tasks/${encodeURIComponent(id)}`);
      const deps = await Promise.all(
        task.depends_on.slice(0, 5).map(async (d) => {
          const known = titleCache.get(d);
          if (known !== undefined) return { id: d, title: known };
          const { task: dep } = await get<{ task: Task }>(`/tasks/${encodeURIComponent(d)}`);
          titleCache.set(d, dep.title);
          return { id: d, title: dep.title };
        }),
      );
      depCache.set(key, deps);
      return deps;
    },
    [key],
    0,
  );
  if (!data || data.length === 0) return null;
  return (
    <ul class="deps" aria-label="waits on">
      {data.map((d) => (
        <li key={d.id}>
          ↳ <TaskLink id={d.id}>{line(d.title)}</TaskLink>
        </li>
      ))}
    </ul>
  );
}

function NewTask({ onDone }: { onDone: () => void }) {
  const [title, setTitle] = useState('');
  const [priority, setPriority] = useState('5');
  const [deps, setDeps] = useState('');
  const [error, run] = useAction();
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const depends_on = deps.split(/[\s,]+/).filter(Boolean);
    const ok = await run(() =>
      call('POST', '/tasks', { body: { tasks: [{ title, priority: Number(priority), ...(depends_on.length ? { depends_on } : {}) }] } }),
    );
    if (ok) {
      setTitle('');
      setDeps('');
      onDone();
    }
  };
  return (
    <form class="inline" onSubmit={(e) => void submit(e)} aria-label="New task">
      <input aria-label="Title" placeholder="New task title" value={title} maxLength={200} onInput={(e) => setTitle(e.currentTarget.value)} required />
      <input aria-label="Priority" type="number" min={0} max={9} value={priority} onInput={(e) => setPriority(e.currentTarget.value)} />
      <input aria-label="Depends on" placeholder="depends on (ids)" value={deps} onInput={(e) => setDeps(e.currentTarget.value)} />
      <button type="submit">Add task</button>
      <Err error={error} />
    </form>
  );
}

export function BoardView({ can, columns }: ViewProps) {
  const now = useNow();
  const [bump, setBump] = useState(0);
  // Totals per state (whoami's board counts), for columns that show only their first pages.
  const all = TASK_STATES.reduce((n, s) => n + (columns[s] ?? 0), 0);
  const { data: counts } = useLoad(() => get<{ board: Record<string, number> }>('/whoami').then((w) => w.board), [], all + bump);
  return (
    <>
      {can('task_create') && <NewTask onDone={() => setBump((b) => b + 1)} />}
      <div class="board">
        {TASK_STATES.map((s) => <Column key={s} state={s} version={(columns[s] ?? 0) + bump} now={now} total={counts?.[s]} />)}
      </div>
    </>
  );
}

// ---------------------------------------------------------------- task page

/** Events about one subject, oldest first, from the oldest kept (bounded: 10 pages of 200). */
async function historyOf(subject: string, types: string[]): Promise<HubEvent[]> {
  const out: HubEvent[] = [];
  let after = 'start';
  for (let i = 0; i < 10; i++) {
    const page = await get<{ events: HubEvent[]; cursor: string }>('/events', { after, types, limit: 200 });
    out.push(...page.events.filter((e) => e.subject === subject));
    if (page.events.length < 200) break;
    after = page.cursor;
  }
  return out;
}

/**
 * The newest `keep` events of these types. events_wait reads forward only, so this pages from the
 * oldest kept event (at most 25 pages of 200; the hub's retention bounds how many there are).
 */
async function recentEvents(types: string[], keep: number): Promise<HubEvent[]> {
  let out: HubEvent[] = [];
  let after = 'start';
  for (let i = 0; i < 25; i++) {
    const page = await get<{ events: HubEvent[]; cursor: string }>('/events', { after, types, limit: 200 });
    out = [...out, ...page.events].slice(-keep);
    if (page.events.length < 200) break;
    after = page.cursor;
  }
  return out;
}

const TASK_EVENT_TYPES = [
  'task.created', 'task.claimed', 'task.started', 'task.done', 'task.ready', 'task.failed', 'task.retry', 'task.cancelled',
  'task.blocked', 'task.updated', 'task.lease_expired', 'task.lease_transferred',
];

export function TaskView({ arg, can, version }: ViewProps) {
  const now = useNow();
  const { data, error, reload } = useLoad(
    async () => {
      const { task } = await get<{ task: Task }>(`/tasks/${encodeURIComponent(arg)}`);
      const history = await historyOf(arg, TASK_EVENT_TYPES).catch(() => [] as HubEvent[]);
      return { task, history };
    },
    [arg],
    version,
  );
  const [actionError, run] = useAction();
  if (!data) return <><p><a href="#/board">← Board</a></p><Err error={error} /></>;
  const { task, history } = data;
  const open = !['done', 'failed', 'cancelled'].includes(task.status);
  return (
    <article class="task" data-task={task.id}>
      <p><a href="#/board">← Board</a></p>
      <h1>{line(task.title)}</h1>
      <dl class="facts">
        <dt>id</dt><dd><code>{line(task.id)}</code></dd>
        <dt>state</dt><dd class={`state state-${task.status}`}>{task.status}</dd>
        <dt>priority</dt><dd>{task.priority}</dd>
        <dt>attempts</dt><dd>{task.attempts} / {task.max_attempts}</dd>
        <dt>holder</dt><dd>{task.lease ? <>{line(task.lease.owner)} · lease {countdown(task.lease.expires_at, now)}</> : '—'}</dd>
        <dt>assignee</dt><dd>{line(task.assignee ?? task.assignee_role ?? '—')}</dd>
        <dt>depends on</dt><dd>{task.depends_on.length ? task.depends_on.map((d, i) => <span key={d}>{i > 0 && ', '}<TaskLink id={d} /></span>) : '—'}</dd>
        <dt>labels</dt><dd>{task.labels.map(line).join(', ') || '—'}</dd>
        <dt>created</dt><dd>{line(task.created_by)} · {ago(task.created_at, now)}</dd>
        {task.last_error && <><dt>last error</dt><dd class="error-text">{clean(task.last_error)}</dd></>}
      </dl>
      {task.description && <pre class="text">{clean(task.description)}</pre>}
      {task.result && <><h2>Result</h2><pre class="text">{clean(task.result.summary)}</pre></>}
      {open && can('task_cancel') && (
        <p>
          <button type="button" class="danger" onClick={() => void run(() => call('POST', `/tasks/${encodeURIComponent(task.id)}/cancel`, { body: {} })).then(reload)}>
            Cancel task
          </button>
        </p>
      )}
      <Err error={actionError} />
      <h2>History</h2>
      <ol class="history">
        {history.map((e) => (
          <li key={e.id}>
            <time dateTime={e.at}>{new Date(e.at).toLocaleTimeString()}</time> <b>{e.type}</b>
            {e.actor && <> by {line(e.actor)}</>}
          </li>
        ))}
      </ol>
    </article>
  );
}

// ---------------------------------------------------------------- agents

export function AgentsView({ version, can }: ViewProps) {
  const now = useNow();
  const { data, error } = useLoad(
    async () => {
      const [{ agents }, held, locks] = await Promise.all([
        get<{ agents: Agent[] }>('/agents'),
        get<{ tasks: TaskSummary[] }>('/tasks', { status: ['claimed', 'running'], limit: 200 }),
        can('lock_list') ? get<{ locks: LockRow[] }>('/locks', { limit: 200 }) : Promise.resolve({ locks: [] as LockRow[] }),
      ]);
      return { agents, held: held.tasks, locks: locks.locks };
    },
    [],
    version,
  );
  return (
    <>
      <h1>Agents</h1>
      <Err error={error} />
      <table>
        <thead><tr><th>agent</th><th>role</th><th>presence</th><th>last seen</th><th>holds</th><th>locks</th></tr></thead>
        <tbody>
          {data?.agents.map((a) => (
            <tr key={a.id} data-agent={a.name}>
              <td>{line(a.name)}{a.kind && <span class="muted"> ({line(a.kind)})</span>}</td>
              <td>{line(a.role)}</td>
              <td><span class={`presence presence-${a.presence}`}>{a.presence}</span></td>
              <td>{ago(a.last_seen_at, now)}</td>
              <td>{data.held.filter((t) => t.lease?.owner === a.name).map((t) => <div key={t.id}><TaskLink id={t.id}>{line(t.title)}</TaskLink></div>)}</td>
              <td>{data.locks.filter((l) => l.agent === a.name).map((l) => <div key={l.id}><code>{l.paths.map(line).join(' ')}</code></div>)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

// ---------------------------------------------------------------- messages

export function MessagesView({ version }: ViewProps) {
  const now = useNow();
  const { data, error } = useLoad(() => get<{ messages: Message[] }>('/messages', { limit: 100 }), [], version);
  const threads = new Map<string, Message[]>();
  for (const m of data?.messages ?? []) {
    const list = threads.get(m.thread_id) ?? [];
    list.push(m);
    threads.set(m.thread_id, list);
  }
  return (
    <>
      <h1>Messages</h1>
      <p class="muted">What your key may see: public messages, those to you or your role.</p>
      <Err error={error} />
      {[...threads.entries()].map(([thread, msgs]) => {
        const sorted = [...msgs].sort((a, b) => a.created_at.localeCompare(b.created_at));
        return (
          <section key={thread} class="thread" aria-label={`thread ${sorted[0]?.subject ?? ''}`}>
            <h2>{line(sorted[0]?.subject ?? thread)}</h2>
            {sorted.map((m) => (
              <div key={m.id} class={`message importance-${m.importance}`}>
                <div class="meta">
                  <b>{line(m.from)}</b> · {m.visibility} · {ago(m.created_at, now)}
                  {m.subject !== sorted[0]?.subject && <> · {line(m.subject)}</>}
                </div>
                <pre class="text">{clean(m.body)}</pre>
              </div>
            ))}
          </section>
        );
      })}
      {data && data.messages.length === 0 && <p class="muted">No messages.</p>}
    </>
  );
}

// ---------------------------------------------------------------- locks

export function LocksView({ version, can }: ViewProps) {
  const now = useNow();
  const { data, error, reload } = useLoad(() => get<{ locks: LockRow[] }>('/locks', { limit: 200 }), [], version);
  const [actionError, run] = useAction();
  return (
    <>
      <h1>Locks</h1>
      <Err error={error ?? actionError} />
      <table>
        <thead><tr><th>paths</th><th>mode</th><th>holder</th><th>task</th><th>reason</th><th>expires</th>{can('lock_force_release') && <th />}</tr></thead>
        <tbody>
          {data?.locks.map((l) => (
            <tr key={l.id}>
              <td><code>{l.paths.map(line).join(' ')}</code></td>
              <td>{l.mode}</td>
              <td>{line(l.agent)}</td>
              <td>{l.task_id ? <TaskLink id={l.task_id} /> : '—'}</td>
              <td>{line(l.reason ?? '')}</td>
              <td>{countdown(l.expires_at, now)}</td>
              {can('lock_force_release') && (
                <td><button type="button" class="danger" onClick={() => void run(() => call('POST', `/locks/${encodeURIComponent(l.id)}/force-release`, { body: {} })).then(reload)}>Force release</button></td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      {data && data.locks.length === 0 && <p class="muted">No locks held.</p>}
    </>
  );
}

// ---------------------------------------------------------------- sessions, checkpoints, handoffs

export function SessionsView({ version }: ViewProps) {
  const now = useNow();
  const { data, error } = useLoad(
    async () => {
      const [{ handoffs }, events] = await Promise.all([
        get<{ handoffs: Handoff[] }>('/handoffs', { limit: 200 }),
        recentEvents(['session.started', 'session.checkpoint', 'session.ended', 'handoff.created', 'handoff.accepted'], 100).catch(() => [] as HubEvent[]),
      ]);
      return { handoffs, events: [...events].reverse() };
    },
    [],
    version,
  );
  return (
    <>
      <h1>Sessions</h1>
      <Err error={error} />
      <h2>Handoffs</h2>
      <table>
        <thead><tr><th>from</th><th>to</th><th>summary</th><th>tasks</th><th>status</th><th>when</th></tr></thead>
        <tbody>
          {data?.handoffs.map((h) => (
            <tr key={h.id}>
              <td>{line(h.from)}</td>
              <td>{line(h.to.agent ?? h.to.role ?? h.to.kind)}</td>
              <td>{line(h.summary)}</td>
              <td>{h.task_ids.map((t) => <div key={t}><TaskLink id={t} /></div>)}</td>
              <td>{h.status}{h.accepted_by && <> by {line(h.accepted_by)}</>}</td>
              <td>{ago(h.created_at, now)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Sessions and checkpoints</h2>
      <ol class="history">
        {data?.events.map((e) => (
          <li key={e.id}>
            <time dateTime={e.at}>{ago(e.at, now)}</time> <b>{e.type.replace('session.', '').replace('handoff.', 'handoff ')}</b> {line(e.actor ?? '')}{' '}
            <code>{line(e.subject ?? '')}</code>
          </li>
        ))}
      </ol>
    </>
  );
}

// ---------------------------------------------------------------- approvals

function Decide({ a, onDone }: { a: Approval; onDone: () => void }) {
  const [reason, setReason] = useState('');
  const [error, run] = useAction();
  const decide = (decision: 'grant' | 'deny'): void => {
    void run(() => call('POST', `/approvals/${encodeURIComponent(a.id)}/decide`, { body: { decision, ...(reason.trim() ? { reason: reason.trim() } : {}) } })).then((ok) => ok && onDone());
  };
  return (
    <div class="decide">
      <input aria-label={`Reason for ${a.id}`} placeholder="reason (optional)" value={reason} maxLength={2000} onInput={(e) => setReason(e.currentTarget.value)} />
      <button type="button" onClick={() => decide('grant')}>Approve</button>
      <button type="button" class="danger" onClick={() => decide('deny')}>Deny</button>
      <Err error={error} />
    </div>
  );
}

export function ApprovalsView({ version, can }: ViewProps) {
  const now = useNow();
  const allowed = can('approval_list');
  const { data, error, reload } = useLoad(
    async () => {
      if (!allowed) return { pending: [] as Approval[], decided: [] as Approval[] };
      const [p, g, d] = await Promise.all(
        (['pending', 'granted', 'denied'] as const).map((status) => get<{ approvals: Approval[] }>('/approvals', { status, limit: 50 })),
      );
      const decided = [...g!.approvals, ...d!.approvals].sort((a, b) => (b.decided_at ?? '').localeCompare(a.decided_at ?? ''));
      return { pending: p!.approvals, decided };
    },
    [allowed],
    version,
  );
  if (!allowed) return <><h1>Approvals</h1><p class="muted">Your role does not decide approvals.</p></>;
  return (
    <>
      <h1>Approvals</h1>
      <Err error={error} />
      <h2>Waiting for you ({data?.pending.length ?? 0})</h2>
      {data?.pending.map((a) => (
        <section key={a.id} class={`approval risk-${a.risk}`} data-approval={a.id}>
          <h3>{line(a.action)}</h3>
          <p class="meta">{a.risk} risk · asked by {line(a.requested_by)} · {ago(a.created_at, now)}{a.task_id && <> · <TaskLink id={a.task_id} /></>}</p>
          {a.details && <pre class="text">{clean(a.details)}</pre>}
          {can('approval_decide') && <Decide a={a} onDone={reload} />}
        </section>
      ))}
      <h2>Decided</h2>
      <table>
        <thead><tr><th>action</th><th>decision</th><th>by</th><th>reason</th><th>when</th></tr></thead>
        <tbody>
          {data?.decided.map((a) => (
            <tr key={a.id}>
              <td>{line(a.action)}</td>
              <td>{a.status}</td>
              <td>{line(a.decided_by ?? '')}</td>
              <td>{line(a.reason ?? '')}</td>
              <td>{ago(a.decided_at, now)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

// ---------------------------------------------------------------- audit

export function AuditView({ version, can }: ViewProps) {
  const now = useNow();
  // The rows follow the live events; the chain walk (every row of the audit log) runs when the
  // view opens and when asked, never per event.
  const { data, error } = useLoad(async () => (await get<{ rows: AuditRow[] }>('/audit', { limit: 100 })).rows, [], version);
  const chain = useLoad(
    () => (can('audit_verify') ? get<{ ok: boolean; rows: number; reason: string | null; first_bad_id: number | null; chain: string | null; first_bad_seq: number | null }>('/audit/verify') : Promise.resolve(null)),
    [],
    0,
  );
  const verify = chain.data;
  return (
    <>
      <h1>Audit log</h1>
      <Err error={error ?? chain.error} />
      {verify && (
        <p class={verify.ok ? 'chain-ok' : 'chain-bad'} data-testid="chain">
          Chain {verify.ok ? 'intact' : 'BROKEN'} · {verify.rows} rows checked
          {!verify.ok && (
            <>
              {' '}
              · chain {line(verify.chain ?? '?')} · first bad position {verify.first_bad_seq ?? '?'}
              {verify.first_bad_id !== null && <> (row {verify.first_bad_id})</>} · {line(verify.reason ?? '')}
            </>
          )}{' '}
          <button type="button" onClick={chain.reload}>
            Verify again
          </button>
        </p>
      )}
      <table>
        <thead><tr><th>when</th><th>who</th><th>op</th><th>target</th><th>outcome</th><th>via</th></tr></thead>
        <tbody>
          {data?.map((r) => (
            <tr key={r.id} class={`outcome-${r.outcome}`}>
              <td>{ago(r.at, now)}</td>
              <td>{line(r.principal ?? '—')}{r.role && <span class="muted"> ({line(r.role)})</span>}</td>
              <td>{line(r.op)}</td>
              <td><code>{line(r.target ?? '')}</code></td>
              <td>{r.outcome}{r.code && <> ({line(r.code)})</>}</td>
              <td>{line(r.transport)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

// ---------------------------------------------------------------- keys

const ROLES = ['worker', 'lead', 'observer', 'admin'];

export function KeysView({ version, can }: ViewProps) {
  const now = useNow();
  const { data, error, reload } = useLoad(() => get<{ tokens: Token[] }>('/tokens'), [], version);
  const [name, setName] = useState('');
  const [role, setRole] = useState('worker');
  const [created, setCreated] = useState<string | null>(null);
  const [actionError, run] = useAction();
  const create = async (e: Event): Promise<void> => {
    e.preventDefault();
    setCreated(null);
    let key: string | null = null;
    const ok = await run(async () => {
      key = (await call<{ key: string }>('POST', '/tokens', { body: { name: name.trim(), role } })).key;
    });
    if (ok) {
      setCreated(key);
      setName('');
      reload();
    }
  };
  return (
    <>
      <h1>Keys</h1>
      <Err error={error ?? actionError} />
      {can('token_create') && (
        <form class="inline" onSubmit={(e) => void create(e)} aria-label="New key">
          <input aria-label="Agent name" placeholder="agent name" value={name} onInput={(e) => setName(e.currentTarget.value)} required />
          <select aria-label="Role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
          </select>
          <button type="submit">Create key</button>
        </form>
      )}
      {created && (
        <div class="once" role="status">
          <p>The new key, shown this once (copy it now; the hub keeps only its hash):</p>
          <code data-testid="new-key">{created}</code>
          <button type="button" class="quiet" onClick={() => setCreated(null)}>Done</button>
        </div>
      )}
      <table>
        <thead><tr><th>name</th><th>role</th><th>prefix</th><th>created</th><th>last used</th><th>state</th>{can('token_revoke') && <th />}</tr></thead>
        <tbody>
          {data?.tokens.map((t) => (
            <tr key={t.id} data-token={t.id}>
              <td>{line(t.name)}{t.server_admin && <span class="label">server admin</span>}</td>
              <td>{line(t.role)}</td>
              <td><code>{line(t.prefix)}</code></td>
              <td>{ago(t.created_at, now)}</td>
              <td>{ago(t.last_used_at, now)}</td>
              <td>{t.revoked_at ? 'revoked' : t.expires_at && Date.parse(t.expires_at) < now ? 'expired' : 'active'}</td>
              {can('token_revoke') && (
                <td>
                  {!t.revoked_at && (
                    <button type="button" class="danger" onClick={() => void run(() => call('DELETE', `/tokens/${encodeURIComponent(t.id)}`)).then(reload)}>Revoke</button>
                  )}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

// ---------------------------------------------------------------- plan

export function PlanView({ version, can }: ViewProps) {
  const now = useNow();
  const { data, error, reload } = useLoad(() => get<{ plan: Plan }>('/plan').then((o) => o.plan), [], version);
  const [editing, setEditing] = useState<{ goal: string; body: string; version: number } | null>(null);
  const [actionError, run] = useAction();
  const save = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (!editing) return;
    const ok = await run(() => call('PUT', '/plan', { body: { goal: editing.goal, body: editing.body, if_version: editing.version } }));
    if (ok) {
      setEditing(null);
      reload();
    }
  };
  return (
    <>
      <h1>Plan</h1>
      <Err error={error ?? actionError} />
      {editing ? (
        <form class="plan-edit" onSubmit={(e) => void save(e)}>
          <label for="goal">Goal</label>
          <input id="goal" value={editing.goal} onInput={(e) => setEditing({ ...editing, goal: e.currentTarget.value })} />
          <label for="body">Plan</label>
          <textarea id="body" rows={18} value={editing.body} onInput={(e) => setEditing({ ...editing, body: e.currentTarget.value })} />
          <p>
            <button type="submit">Save</button> <button type="button" class="quiet" onClick={() => setEditing(null)}>Cancel</button>
          </p>
        </form>
      ) : (
        data && (
          <>
            <h2>{line(data.goal) || <span class="muted">No goal set.</span>}</h2>
            <p class="muted">version {data.version}{data.updated_by && <> · by {line(data.updated_by)} · {ago(data.updated_at, now)}</>}</p>
            <pre class="text plan">{clean(data.body)}</pre>
            {can('plan_update') && (
              <button type="button" onClick={() => setEditing({ goal: data.goal, body: data.body, version: data.version })}>Edit plan</button>
            )}
          </>
        )
      )}
    </>
  );
}
