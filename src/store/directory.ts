import { newId } from '../core/ids.js';
import type { Executor } from './db.js';
import { list, sql } from './sql.js';

/** Projects, agents, tokens, plans: the small tables every principal touches. */
export interface ProjectRow {
  id: string;
  name: string;
  created_at: number;
}

export interface AgentRow {
  id: string;
  project_id: string;
  name: string;
  kind: string | null;
  role: string;
  capabilities: string;
  last_seen_at: number | null;
  created_at: number;
}

export interface TokenRow {
  id: string;
  project_id: string;
  name: string;
  role: string;
  server_admin: number;
  key_hash: string;
  prefix: string;
  created_by: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}

export interface PlanRow {
  project_id: string;
  goal: string;
  body: string;
  version: number;
  updated_by: string | null;
  updated_at: number;
}

export function projectByName(ex: Executor, name: string): Promise<ProjectRow | undefined> {
  return ex.get<ProjectRow>(sql`SELECT * FROM projects WHERE name = ${name}`);
}

export async function ensureProject(ex: Executor, name: string, now: number): Promise<ProjectRow> {
  const found = await projectByName(ex, name);
  if (found !== undefined) return found;
  const row: ProjectRow = { id: newId('prj'), name, created_at: now };
  await ex.run(sql`INSERT INTO projects (id, name, created_at) VALUES (${row.id}, ${row.name}, ${row.created_at})`);
  return row;
}

export function agentByName(ex: Executor, projectId: string, name: string): Promise<AgentRow | undefined> {
  return ex.get<AgentRow>(sql`SELECT * FROM agents WHERE project_id = ${projectId} AND name = ${name}`);
}

export async function ensureAgent(
  ex: Executor,
  projectId: string,
  name: string,
  role: string,
  now: number,
): Promise<AgentRow> {
  const found = await agentByName(ex, projectId, name);
  if (found !== undefined) {
    if (found.role !== role) {
      await ex.run(sql`UPDATE agents SET role = ${role} WHERE id = ${found.id}`);
      return { ...found, role };
    }
    return found;
  }
  return createAgent(ex, projectId, name, role, now);
}

/** Creates an agent; never touches an existing one (the caller checked the name is free). */
export async function createAgent(ex: Executor, projectId: string, name: string, role: string, now: number): Promise<AgentRow> {
  const row: AgentRow = {
    id: newId('agt'),
    project_id: projectId,
    name,
    kind: null,
    role,
    capabilities: '[]',
    last_seen_at: now,
    created_at: now,
  };
  await ex.run(sql`INSERT INTO agents (id, project_id, name, kind, role, capabilities, last_seen_at, created_at)
    VALUES (${row.id}, ${projectId}, ${name}, NULL, ${role}, '[]', ${now}, ${now})`);
  return row;
}

/** The agent an external issuer's subject speaks for in a project (migration 10), if it has one. */
export function externalAgent(ex: Executor, issuer: string, subject: string, projectId: string): Promise<AgentRow | undefined> {
  return ex.get<AgentRow>(sql`SELECT a.* FROM external_identities x JOIN agents a ON a.id = x.agent_id
    WHERE x.issuer = ${issuer} AND x.subject = ${subject} AND x.project_id = ${projectId}`);
}

export async function linkExternal(
  ex: Executor,
  issuer: string,
  subject: string,
  projectId: string,
  agentId: string,
  now: number,
): Promise<void> {
  await ex.run(sql`INSERT INTO external_identities (issuer, subject, project_id, agent_id, created_at)
    VALUES (${issuer}, ${subject}, ${projectId}, ${agentId}, ${now})`);
}

export function agentById(ex: Executor, id: string): Promise<AgentRow | undefined> {
  return ex.get<AgentRow>(sql`SELECT * FROM agents WHERE id = ${id}`);
}

export function listAgents(ex: Executor, projectId: string): Promise<AgentRow[]> {
  return ex.all<AgentRow>(sql`SELECT * FROM agents WHERE project_id = ${projectId} ORDER BY name`);
}

export async function touchAgents(ex: Executor, seen: ReadonlyMap<string, number>): Promise<void> {
  for (const [id, at] of seen) {
    await ex.run(sql`UPDATE agents SET last_seen_at = ${at} WHERE id = ${id} AND (last_seen_at IS NULL OR last_seen_at < ${at})`);
  }
}

export async function setAgentProfile(
  ex: Executor,
  id: string,
  kind: string | null,
  capabilities: readonly string[],
): Promise<void> {
  await ex.run(sql`UPDATE agents SET kind = ${kind}, capabilities = ${JSON.stringify(capabilities)} WHERE id = ${id}`);
}

export interface TokenWithProject extends TokenRow {
  project_name: string;
}

export interface TokenForAuth extends TokenWithProject {
  agent_id: string | null;
}

/** The one statement behind every authenticated request: token, its project and its agent. */
export function tokenByHash(ex: Executor, hash: string): Promise<TokenForAuth | undefined> {
  return ex.get<TokenForAuth>(sql`SELECT t.id, t.project_id, t.name, t.role, t.server_admin, t.expires_at,
      t.revoked_at, p.name AS project_name, a.id AS agent_id
    FROM tokens t JOIN projects p ON p.id = t.project_id
    LEFT JOIN agents a ON a.project_id = t.project_id AND a.name = t.name
    WHERE t.key_hash = ${hash}`);
}

export async function insertToken(ex: Executor, t: Omit<TokenRow, 'last_used_at' | 'revoked_at'>): Promise<void> {
  await ex.run(sql`INSERT INTO tokens (id, project_id, name, role, server_admin, key_hash, prefix, created_by,
      created_at, expires_at)
    VALUES (${t.id}, ${t.project_id}, ${t.name}, ${t.role}, ${t.server_admin}, ${t.key_hash}, ${t.prefix},
      ${t.created_by}, ${t.created_at}, ${t.expires_at})`);
}

export function listTokens(ex: Executor, projectId: string | null): Promise<TokenWithProject[]> {
  return projectId === null
    ? ex.all<TokenWithProject>(sql`SELECT t.*, p.name AS project_name FROM tokens t
        JOIN projects p ON p.id = t.project_id ORDER BY t.created_at, t.id`)
    : ex.all<TokenWithProject>(sql`SELECT t.*, p.name AS project_name FROM tokens t
        JOIN projects p ON p.id = t.project_id WHERE t.project_id = ${projectId} ORDER BY t.created_at, t.id`);
}

export function tokenById(ex: Executor, id: string): Promise<TokenWithProject | undefined> {
  return ex.get<TokenWithProject>(sql`SELECT t.*, p.name AS project_name FROM tokens t
      JOIN projects p ON p.id = t.project_id WHERE t.id = ${id}`);
}

export async function revokeToken(ex: Executor, id: string, now: number): Promise<boolean> {
  const r = await ex.run(sql`UPDATE tokens SET revoked_at = ${now} WHERE id = ${id} AND revoked_at IS NULL`);
  return r.changes > 0;
}

export async function touchTokens(ex: Executor, used: ReadonlyMap<string, number>): Promise<void> {
  for (const [id, at] of used) await ex.run(sql`UPDATE tokens SET last_used_at = ${at} WHERE id = ${id}`);
}

export function getPlan(ex: Executor, projectId: string): Promise<PlanRow | undefined> {
  return ex.get<PlanRow>(sql`SELECT * FROM plans WHERE project_id = ${projectId}`);
}

export async function putPlan(
  ex: Executor,
  projectId: string,
  goal: string,
  body: string,
  version: number,
  by: string,
  now: number,
): Promise<void> {
  if (version === 1) {
    await ex.run(sql`INSERT INTO plans (project_id, goal, body, version, updated_by, updated_at)
      VALUES (${projectId}, ${goal}, ${body}, 1, ${by}, ${now})`);
  } else {
    await ex.run(sql`UPDATE plans SET goal = ${goal}, body = ${body}, version = ${version}, updated_by = ${by},
      updated_at = ${now} WHERE project_id = ${projectId} AND version = ${version - 1}`);
  }
}

/** Agent id → name for the given ids (ids not found are left out). */
export async function agentNames(ex: Executor, ids: readonly string[]): Promise<Map<string, string>> {
  const names = await ex.all<{ id: string; name: string }>(sql`SELECT id, name FROM agents WHERE id IN ${list(ids)}`);
  return new Map(names.map((n) => [n.id, n.name]));
}
