import type { Executor } from './db.js';
import { MIGRATIONS } from './migrations.js';
import { sql } from './sql.js';

/** The newest migration this Baton knows. */
export const LATEST_MIGRATION = Math.max(0, ...MIGRATIONS.map((m) => m.version));

/** The schema version the database is at (0: none applied). */
export async function schemaVersion(ex: Executor): Promise<number> {
  const row = await ex.get<{ v: number | null }>(sql`SELECT max(version) AS v FROM schema_migrations`);
  return row?.v ?? 0;
}
