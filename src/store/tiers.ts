import type { Executor } from './db.js';
import { sql } from './sql.js';

/** A key's tool tier (migration 13): null when unset (the server default applies) or the key is unknown. */
export async function keyTools(ex: Executor, tokenId: string): Promise<string | null> {
  const row = await ex.get<{ tools: string | null }>(sql`SELECT tools FROM tokens WHERE id = ${tokenId}`);
  return row?.tools ?? null;
}

/** Sets (or, with null, unsets) a key's tool tier; the column's CHECK refuses any other value. */
export async function setKeyTools(ex: Executor, tokenId: string, tools: string | null): Promise<void> {
  await ex.run(sql`UPDATE tokens SET tools = ${tools} WHERE id = ${tokenId}`);
}
