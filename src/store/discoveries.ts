import type { Executor } from './db.js';
import { join, sql, trusted, type Sql } from './sql.js';
import { scanMatching } from './scan.js';

/**
 * Discoveries are immutable: this module has an insert and reads, and no statement that changes
 * or removes a discovery. Tags are also kept in `discovery_tags` so a tag filter is an exact,
 * indexed match.
 */
export interface DiscoveryRow {
  id: string;
  project_id: string;
  content: string;
  tags: string;
  task_ids: string;
  files: string;
  author: string;
  created_at: number;
}

export interface NewDiscovery {
  id: string;
  projectId: string;
  content: string;
  tags: readonly string[];
  taskIds: readonly string[];
  /** JSON text of the files (sealed when encryption is on). */
  files: string;
  author: string;
  now: number;
}

export async function insertDiscovery(ex: Executor, d: NewDiscovery): Promise<void> {
  await ex.run(sql`INSERT INTO discoveries (id, project_id, content, tags, task_ids, files, author, created_at)
    VALUES (${d.id}, ${d.projectId}, ${d.content}, ${JSON.stringify(d.tags)}, ${JSON.stringify(d.taskIds)},
      ${d.files}, ${d.author}, ${d.now})`);
  for (const tag of new Set(d.tags)) {
    await ex.run(sql`INSERT INTO discovery_tags (discovery_id, project_id, tag) VALUES (${d.id}, ${d.projectId}, ${tag})`);
  }
}

/** A position in a newest-first listing: rows strictly older than it come next. */
export interface Before {
  createdAt: number;
  id: string;
}

export interface DiscoveryFilter {
  projectId: string;
  text?: string;
  tag?: string;
  author?: string;
  since?: number;
  until?: number;
  before?: Before;
  limit: number;
  /**
   * Encrypted content (S32) cannot be matched in SQL: with `match`, `text` is tested by this
   * predicate on the caller's decrypted content instead, over at most `scanMax` candidates
   * (newest first, after the exact-match filters), as message search does.
   */
  match?: (r: DiscoveryRow) => boolean;
  scanMax?: number;
}

export interface DiscoverySearch {
  rows: DiscoveryRow[];
  /** Set when an encrypted text search stopped at its scan bound: the last row scanned, to continue from. */
  scannedTo?: Before;
}


/** Newest first. Text is a case-insensitive substring match on the content. */
export async function searchDiscoveries(ex: Executor, f: DiscoveryFilter): Promise<DiscoverySearch> {
  const where: Sql[] = [sql`project_id = ${f.projectId}`];
  const match = f.text === undefined ? undefined : f.match;
  if (f.text !== undefined && match === undefined) where.push(ex.dialect.containsText(trusted('content'), f.text));
  if (f.tag !== undefined) {
    where.push(sql`id IN (SELECT discovery_id FROM discovery_tags WHERE project_id = ${f.projectId} AND tag = ${f.tag})`);
  }
  if (f.author !== undefined) where.push(sql`author = ${f.author}`);
  if (f.since !== undefined) where.push(sql`created_at >= ${f.since}`);
  if (f.until !== undefined) where.push(sql`created_at <= ${f.until}`);
  const select = (before: Before | undefined, limit: number): Promise<DiscoveryRow[]> => {
    const all = before === undefined ? where : [...where, sql`(created_at, id) < (${before.createdAt}, ${before.id})`];
    return ex.all<DiscoveryRow>(sql`SELECT * FROM discoveries WHERE ${join(all, trusted(' AND '))}
      ORDER BY created_at DESC, id DESC LIMIT ${limit}`);
  };
  if (match === undefined) return { rows: await select(f.before, f.limit) };
  return scanMatching(select, (r) => ({ createdAt: r.created_at, id: r.id }), match, { limit: f.limit, scanMax: f.scanMax ?? 1000, start: f.before });
}
