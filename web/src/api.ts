/**
 * The dashboard's only door to the hub: the REST routes under /api/v1 with the browser session
 * (an HttpOnly cookie set by POST /api/v1/session; the page never holds the key after login).
 * Every request (reads too) carries the session's token in X-CSRF-Token: the cookie alone
 * authorizes nothing, since a browser sends it to every port of the host. The token comes only
 * in the login response and is kept in localStorage, which is scoped by origin (port included),
 * so another server on the same host cannot read it; localStorage rather than sessionStorage so
 * a new tab of the dashboard is signed in too.
 */

export interface Session {
  /** Only in the login response. */
  csrf?: string;
  agent: string;
  role: string;
  project: string;
  server_admin: boolean;
  ops: string[];
  idle_expires_at?: string;
  expires_at?: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = 'baton.csrf';

function storedToken(): string {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return ''; // storage disabled: the session lasts as long as the page
  }
}

let csrf = storedToken();

function keepToken(token: string): void {
  csrf = token;
  try {
    if (token === '') localStorage.removeItem(TOKEN_KEY);
    else localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // storage disabled: kept in memory only
  }
}

/** The session token, for the event stream's `?csrf=` (EventSource cannot set headers). */
export function sessionToken(): string {
  return csrf;
}
/** Called when the hub says the session is gone (401): the app goes back to the login screen. */
let onUnauthenticated: () => void = () => undefined;

export function setUnauthenticatedHandler(fn: () => void): void {
  onUnauthenticated = fn;
}

async function parse(res: Response): Promise<unknown> {
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(res.status, err?.code ?? 'error', err?.message ?? `request failed (${res.status})`);
  }
  return body;
}

type Query = Record<string, string | number | boolean | readonly string[] | undefined>;

function qs(query: Query | undefined): string {
  if (query === undefined) return '';
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    p.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = p.toString();
  return s === '' ? '' : `?${s}`;
}

export async function call<T>(method: string, path: string, opts: { query?: Query; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (csrf !== '') headers['x-csrf-token'] = csrf;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1${path}${qs(opts.query)}`, {
    method,
    headers,
    credentials: 'same-origin',
    body: opts.body === undefined ? null : JSON.stringify(opts.body),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (res.status === 401) keepToken('');
  if (res.status === 401 && path !== '/session') onUnauthenticated();
  return (await parse(res)) as T;
}

export const get = <T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> =>
  call<T>('GET', path, { ...(query ? { query } : {}), ...(signal ? { signal } : {}) });

export async function login(key: string): Promise<Session> {
  const s = await call<Session>('POST', '/session', { body: { key } });
  keepToken(s.csrf ?? '');
  return s;
}

export async function resume(): Promise<Session | null> {
  try {
    if (csrf === '') return null; // no token: whatever cookie there is cannot be used
    return await call<Session>('GET', '/session');
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404)) return null;
    throw e;
  }
}

export async function logout(): Promise<void> {
  try {
    await call('DELETE', '/session');
  } finally {
    keepToken('');
  }
}

// ---- shapes (as the ops' output schemas say) ----

export type TaskState = 'blocked' | 'ready' | 'claimed' | 'running' | 'done' | 'failed' | 'cancelled';
export const TASK_STATES: readonly TaskState[] = ['blocked', 'ready', 'claimed', 'running', 'done', 'failed', 'cancelled'];

export interface Lease {
  owner: string;
  token: number;
  expires_at: string;
}
export interface TaskSummary {
  id: string;
  title: string;
  status: TaskState;
  priority: number;
  labels: string[];
  assignee: string | null;
  attempts: number;
  lease: Lease | null;
  updated_at: string;
}
export interface Task extends TaskSummary {
  description: string;
  capabilities: string[];
  depends_on: string[];
  parent_id: string | null;
  context: { files?: string[]; hints?: string } | null;
  assignee_role: string | null;
  max_attempts: number;
  available_at: string;
  result: { summary: string; files_modified?: string[]; files_created?: string[] } | null;
  last_error: string | null;
  needs_approval: boolean;
  created_by: string;
  created_at: string;
  version: number;
}
export interface Agent {
  id: string;
  name: string;
  kind: string | null;
  role: string;
  capabilities: string[];
  presence: 'online' | 'idle' | 'offline';
  last_seen_at: string | null;
}
export interface Message {
  id: string;
  thread_id: string;
  reply_to: string | null;
  from: string;
  visibility: string;
  subject: string;
  body: string;
  importance: string;
  ack_required: boolean;
  created_at: string;
}
export interface LockRow {
  id: string;
  agent: string;
  mode: 'exclusive' | 'shared';
  paths: string[];
  reason: string | null;
  task_id: string | null;
  created_at: string;
  expires_at: string;
}
export interface Handoff {
  id: string;
  session_id: string;
  from: string;
  to: { kind: string; agent?: string; role?: string };
  summary: string;
  next_goals: string[];
  task_ids: string[];
  files: string[];
  status: 'pending' | 'accepted';
  created_at: string;
  accepted_by: string | null;
}
export interface Approval {
  id: string;
  action: string;
  details: string;
  risk: 'low' | 'medium' | 'high' | 'critical';
  task_id: string | null;
  status: 'pending' | 'granted' | 'denied';
  requested_by: string;
  decided_by: string | null;
  decided_at: string | null;
  reason: string | null;
  created_at: string;
}
export interface HubEvent {
  id: string;
  type: string;
  subject: string | null;
  actor: string | null;
  data: Record<string, unknown> | null;
  at: string;
}
export interface Token {
  id: string;
  name: string;
  role: string;
  project: string;
  prefix: string;
  server_admin: boolean;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}
export interface AuditRow {
  id: string;
  at: string;
  principal: string | null;
  role: string | null;
  op: string;
  target: string | null;
  outcome: string;
  code: string | null;
  transport: string;
}
export interface Plan {
  goal: string;
  body: string;
  version: number;
  updated_by: string | null;
  updated_at: string | null;
}
