import type { Executor } from './db.js';
import { join, sql, trusted, type Sql } from './sql.js';

/**
 * Re-encryption (`baton keys rotate`) of the content columns added to encryption at rest after
 * messages, memory and handoffs (those have their own statements in their modules). One spec per
 * table: its content columns, and the row fields the additional data binds a value to. Rows are
 * addressed by rowid (every table here has one), so one pair of statements serves them all.
 */
export interface SealedTable {
  /** The table's name, as the additional data names it. */
  name: string;
  table: Sql;
  columns: readonly { name: string; col: Sql }[];
}

export const SEALED_TABLES = {
  tasks: {
    name: 'tasks',
    table: trusted('tasks'),
    columns: [
      { name: 'title', col: trusted('title') },
      { name: 'description', col: trusted('description') },
      { name: 'context', col: trusted('context') },
      { name: 'result', col: trusted('result') },
      { name: 'last_error', col: trusted('last_error') },
    ],
  },
  plans: {
    name: 'plans',
    table: trusted('plans'),
    columns: [
      { name: 'goal', col: trusted('goal') },
      { name: 'body', col: trusted('body') },
    ],
  },
  discoveries: {
    name: 'discoveries',
    table: trusted('discoveries'),
    columns: [
      { name: 'content', col: trusted('content') },
      { name: 'files', col: trusted('files') },
    ],
  },
  decisions: {
    name: 'decisions',
    table: trusted('decisions'),
    columns: [
      { name: 'what', col: trusted('what') },
      { name: 'why', col: trusted('why') },
      { name: 'alternatives', col: trusted('alternatives') },
    ],
  },
  approvals: {
    name: 'approvals',
    table: trusted('approvals'),
    columns: [
      { name: 'action', col: trusted('action') },
      { name: 'details', col: trusted('details') },
      { name: 'reason', col: trusted('reason') },
    ],
  },
  locks: {
    name: 'locks',
    table: trusted('locks'),
    columns: [
      { name: 'reason', col: trusted('reason') },
    ],
  },
  sessions: {
    name: 'sessions',
    table: trusted('sessions'),
    columns: [
      { name: 'goal', col: trusted('goal') },
      { name: 'summary', col: trusted('summary') },
    ],
  },
  session_checkpoints: {
    name: 'session_checkpoints',
    table: trusted('session_checkpoints'),
    columns: [
      { name: 'summary', col: trusted('summary') },
      { name: 'completed', col: trusted('completed') },
    ],
  },
} as const satisfies Record<string, SealedTable>;

/** `rid` addresses the row within the transaction that read it (SQLite rowid, PostgreSQL ctid). */
export type SealedRow = Record<string, unknown> & { rid: number | string };

/**
 * Rows with a content value not sealed under the current key (`prefix`: the sealed-value prefix
 * with that key id): plaintext written before encryption was on, or values of an older key.
 */
export function staleRows(ex: Executor, t: SealedTable, prefix: string, limit: number): Promise<SealedRow[]> {
  const n = prefix.length;
  const stale = t.columns.map((c) => sql`(${c.col} IS NOT NULL AND substr(${c.col}, 1, ${n}) <> ${prefix})`);
  return ex.all<SealedRow>(sql`SELECT ${ex.dialect.rowId} AS rid, * FROM ${t.table} WHERE ${join(stale, trusted(' OR '))} LIMIT ${limit}`);
}

/** Writes re-sealed values (column name → value; columns not given are left as they are). */
export async function setSealed(ex: Executor, t: SealedTable, rid: number | string, values: ReadonlyMap<string, string | null>): Promise<void> {
  const sets = t.columns.filter((c) => values.has(c.name)).map((c) => sql`${c.col} = ${values.get(c.name) ?? null}`);
  if (sets.length === 0) return;
  await ex.run(sql`UPDATE ${t.table} SET ${join(sets)} WHERE ${ex.dialect.rowIdIs(rid)}`);
}
