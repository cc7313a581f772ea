import type { Executor } from './db.js';
import { list, sql } from './sql.js';

/** The events spine and the audit trail: both append-only rows. */
export interface EventRow {
  id: number;
  project_id: string;
  type: string;
  subject: string | null;
  actor: string | null;
  data: string | null;
  created_at: number;
  audience: string;
}

export async function appendEvent(
  ex: Executor,
  projectId: string,
  type: string,
  subject: string | null,
  actor: string | null,
  data: string | null,
  now: number,
  audience = 'project',
): Promise<void> {
  await ex.run(sql`INSERT INTO events (project_id, type, subject, actor, data, created_at, audience)
    VALUES (${projectId}, ${type}, ${subject}, ${actor}, ${data}, ${now}, ${audience})`);
}

/** Events after a cursor that one of `audiences` may see (see core/audience.ts), oldest first. */
export function eventsAfter(
  ex: Executor,
  projectId: string,
  audiences: readonly string[],
  after: number,
  limit: number,
): Promise<EventRow[]> {
  return ex.all<EventRow>(sql`SELECT * FROM events WHERE project_id = ${projectId} AND id > ${after}
    AND audience IN ${list(audiences)} ORDER BY id LIMIT ${limit}`);
}

export async function lastEventId(ex: Executor, projectId: string): Promise<number> {
  const row = await ex.get<{ id: number | null }>(sql`SELECT max(id) AS id FROM events WHERE project_id = ${projectId}`);
  return row?.id ?? 0;
}

export interface AuditEntry {
  at: number;
  requestId: string;
  projectId: string | null;
  principal: string | null;
  role: string | null;
  op: string;
  target: string | null;
  outcome: 'ok' | 'denied' | 'invalid' | 'limited' | 'error';
  code: string | null;
  params: string | null;
  transport: string;
  address: string | null;
}

export async function appendAudit(ex: Executor, a: AuditEntry): Promise<void> {
  await ex.run(sql`INSERT INTO audit (at, request_id, project_id, principal, role, op, target, outcome, code, params,
      transport, address)
    VALUES (${a.at}, ${a.requestId}, ${a.projectId}, ${a.principal}, ${a.role}, ${a.op}, ${a.target}, ${a.outcome},
      ${a.code}, ${a.params}, ${a.transport}, ${a.address})`);
}
