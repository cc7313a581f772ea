import { sql, trusted, type Placeholder, type Sql } from './sql.js';

/**
 * The non-portable fragments of Baton's SQL, one object per backend. Store functions reach it as
 * `ex.dialect` and never test which backend they run on: everything that differs between SQLite
 * and PostgreSQL is a method here (the idea of kysely's `Dialect` and pg-boss's plans; no code
 * from either). Everything else (`ON CONFLICT … DO UPDATE SET x = excluded.x`, `RETURNING`,
 * `substr`, `coalesce`, `||`) is written once: both backends accept it as it is.
 */
export interface Dialect {
  readonly name: 'sqlite' | 'postgres';
  /** The text of the i-th bound parameter (1-based). */
  readonly placeholder: Placeholder;
  /** Case-insensitive substring match of `needle` (a bound string) in `haystack`. */
  containsText(haystack: Sql, needle: string): Sql;
  /** A JSON array of strings (stored as text) holds `value`. */
  jsonArrayHas(column: Sql, value: string): Sql;
  /** The larger of two values (SQLite's two-argument `max`, PostgreSQL's `greatest`). */
  greatest(a: Sql, b: Sql): Sql;
  /** A bound value typed as text (PostgreSQL cannot infer a parameter's type inside JSON builders). */
  text(value: string | null): Sql;
  /** A JSON object as text from key → fragment pairs (values: `text()`, numbers, `jsonIds`). */
  jsonObject(entries: readonly (readonly [string, Sql])[]): Sql;
  /** A JSON array of the column `v` a subquery selects (ordered by v), `[]` when it selects nothing. */
  jsonArrayOf(subquery: Sql): Sql;
  /**
   * Appended to a `SELECT … LIMIT n` that picks rows to update: PostgreSQL locks the rows it
   * picks and skips rows another transaction holds (a claim never waits for another claimer);
   * empty on SQLite, whose one writer at a time already excludes a second claimer.
   */
  readonly skipLocked: Sql;
  /** A column that addresses a row of any table within one transaction, and a test against it. */
  readonly rowId: Sql;
  rowIdIs(rid: unknown): Sql;
  /**
   * After rows were inserted with explicit ids (a restore): the statement that makes the table's
   * generated ids continue past them, or null where they do so by themselves (SQLite's rowids).
   */
  continueIds(table: Sql, name: string, column: 'id' | 'seq'): Sql | null;
  /**
   * The database server's clock now, as `ms` (ms since epoch, read when the statement runs, not
   * when its transaction began); null when the store is a file on this machine, whose clock is
   * ours (see core/synced-clock.ts).
   */
  serverClock: Sql | null;
  /**
   * Whether an INSERT can run inside a WITH of another statement (PostgreSQL's data-modifying
   * CTE): an op's events then go in the same statement as its audit row (journal.ts appendAudits).
   */
  readonly insertInWith: boolean;
}

export const SQLITE: Dialect = {
  name: 'sqlite',
  placeholder: () => '?',
  containsText: (haystack, needle) => sql`instr(lower(${haystack}), lower(${needle})) > 0`,
  jsonArrayHas: (column, value) => sql`EXISTS (SELECT 1 FROM json_each(${column}) j WHERE j.value = ${value})`,
  greatest: (a, b) => sql`max(${a}, ${b})`,
  text: (value) => sql`${value}`,
  jsonObject: (entries) => sql`json_object(${joinPairs(entries, (k) => sql`${k}`)})`,
  jsonArrayOf: (subquery) => sql`json((SELECT json_group_array(v) FROM (${subquery})))`,
  skipLocked: trusted(''),
  rowId: trusted('rowid'),
  rowIdIs: (rid) => sql`rowid = ${rid}`,
  continueIds: () => null,
  serverClock: null,
  insertInWith: false,
};

export const POSTGRES: Dialect = {
  name: 'postgres',
  placeholder: (i) => `$${i}`,
  containsText: (haystack, needle) => sql`strpos(lower(${haystack}), lower(${needle}::text)) > 0`,
  jsonArrayHas: (column, value) => sql`(${column})::jsonb @> jsonb_build_array(${value}::text)`,
  greatest: (a, b) => sql`greatest(${a}, ${b})`,
  text: (value) => sql`${value}::text`,
  jsonObject: (entries) => sql`json_build_object(${joinPairs(entries, (k) => sql`${k}::text`)})::text`,
  jsonArrayOf: (subquery) => sql`(SELECT coalesce(json_agg(s.v ORDER BY s.v), '[]'::json) FROM (${subquery}) AS s)`,
  skipLocked: trusted(' FOR UPDATE SKIP LOCKED'),
  rowId: trusted('ctid'),
  rowIdIs: (rid) => sql`ctid = ${rid}::tid`,
  continueIds: (table, name, column) => {
    const col = column === 'id' ? trusted('id') : trusted('seq');
    return sql`SELECT setval(pg_get_serial_sequence(${name}::text, ${column}::text), coalesce((SELECT max(${col}) FROM ${table}), 0) + 1, false)`;
  },
  // clock_timestamp(), not now(): now() is the transaction's start.
  serverClock: sql`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`,
  insertInWith: true,
};

/** `k1, v1, k2, v2`: keys are fixed strings of the caller's, bound. */
function joinPairs(entries: readonly (readonly [string, Sql])[], key: (k: string) => Sql): Sql {
  let out: Sql | null = null;
  for (const [k, v] of entries) {
    const pair = sql`${key(k)}, ${v}`;
    out = out === null ? pair : sql`${out}, ${pair}`;
  }
  return out ?? trusted('');
}
