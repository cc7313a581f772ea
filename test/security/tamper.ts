import type { Hub } from '../../src/hub.js';
import { sql, type Sql } from '../../src/store/sql.js';

/**
 * Tampering behind Baton's back, for the audit tests: SQL with `?` placeholders run as given
 * through the hub's own store, so the same test runs on SQLite and PostgreSQL (appendAudits is
 * bypassed: no chain head moves with it).
 */
export function raw(text: string, values: readonly unknown[]): Sql {
  const parts = text.split('?');
  return sql(Object.assign([...parts], { raw: parts }) as unknown as TemplateStringsArray, ...values);
}

export async function tamperWith(hub: Hub, ...statements: [string, ...unknown[]][]): Promise<void> {
  await hub.db.write(async (ex) => {
    for (const [text, ...args] of statements) await ex.run(raw(text, args));
  });
}
