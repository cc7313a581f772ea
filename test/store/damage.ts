import { closeSync, openSync, writeSync } from 'node:fs';
import { RawDb as Database } from '../raw-db.js';

/**
 * Overwrites the b-tree header of `table`'s root page with garbage, as a failing disk or a stray
 * write would. The file must be closed (and so checkpointed: no -wal beside it).
 */
export function damageRootPage(file: string, table: string): void {
  const raw = new Database(file, { readonly: true });
  const pageSize = raw.pragma('page_size') as number;
  const row = raw.prepare('SELECT rootpage FROM sqlite_master WHERE type = ? AND name = ?').get('table', table) as { rootpage: number } | undefined;
  raw.close();
  if (row === undefined) throw new Error(`no table ${table}`);
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.alloc(64, 0x5a), 0, 64, (row.rootpage - 1) * pageSize);
  } finally {
    closeSync(fd);
  }
}
