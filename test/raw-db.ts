import { openSqlite, type SqliteConnection, type SqliteStatement } from '../src/store/sqlite-driver.js';

/**
 * A test's own connection to a Baton database file (to tamper with rows, check what is stored,
 * hold a lock), through the same driver the hub chose (node:sqlite or better-sqlite3), with
 * better-sqlite3's call shape so a test reads the same on either: `new RawDb(file)`,
 * `prepare(text).run(...params)`, `pragma`, `exec`, `close`.
 */
export class RawDb {
  private readonly conn: SqliteConnection;

  constructor(file: string, options: { readonly?: boolean; fileMustExist?: boolean } = {}) {
    this.conn = openSqlite(file, options.readonly === true ? { readonly: true } : {});
  }

  prepare(text: string): RawStatement {
    return new RawStatement(this.conn.prepare(text));
  }

  exec(text: string): void {
    this.conn.exec(text);
  }

  pragma(text: string): unknown {
    return this.conn.pragma(text);
  }

  get inTransaction(): boolean {
    return this.conn.inTransaction;
  }

  close(): void {
    this.conn.close();
  }
}

export class RawStatement {
  constructor(private readonly s: SqliteStatement) {}
  run(...params: unknown[]): { changes: number } {
    return this.s.run(params);
  }
  get(...params: unknown[]): unknown {
    return this.s.get(params);
  }
  all(...params: unknown[]): unknown[] {
    return this.s.all(params);
  }
}
