/**
 * `baton migrate` (and `init` / `doctor` on PostgreSQL): the CLI reaches the backend the URL
 * names (a real PostgreSQL schema, created by the command) and applies every migration once; on
 * SQLite it needs an existing data dir.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { pgSchema, runBaton, spawnServe, tempDir } from '../helpers.js';

const LATEST = Math.max(...MIGRATIONS.map((m) => m.version));

describe('baton migrate', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('PostgreSQL: applies every migration once, under --store; the tables are in the named schema', async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const env = { BATON_DATABASE_SCHEMA: s.schema, BATON_LOG_LEVEL: 'silent' };
    const first = await runBaton(['migrate', '--store', s.url], { env });
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toBe(`postgres: applied ${MIGRATIONS.length} migrations; schema version ${LATEST} (current)\n`);
    const again = await runBaton(['migrate'], { env: { ...env, BATON_DATABASE_URL: s.url } });
    expect(again.stdout).toBe(`postgres: applied 0 migrations; schema version ${LATEST} (current)\n`);
    const client = new pg.Client({ connectionString: s.url });
    await client.connect();
    try {
      const r = await client.query<{ v: string }>({ text: `SELECT max(version) AS v FROM "${s.schema}".schema_migrations` });
      expect(Number(r.rows[0]!.v)).toBe(LATEST);
    } finally {
      await client.end();
    }
  });

  it('PostgreSQL: a role given only its own schema (no CREATE on the database) migrates and starts', async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const role = `${s.schema}_r`;
    const admin = new pg.Client({ connectionString: s.url });
    await admin.connect();
    try {
      // As a DBA would: a login role, and a schema it owns; nothing on the database itself.
      await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD 'role-pw-for-test'`);
      await admin.query(`CREATE SCHEMA "${s.schema}" AUTHORIZATION "${role}"`);
      const url = new URL(s.url);
      url.username = role;
      url.password = 'role-pw-for-test';
      const tmp = tempDir();
      cleanups.push(tmp.cleanup);
      const env = { BATON_DATABASE_URL: url.href, BATON_DATABASE_SCHEMA: s.schema, BATON_LOG_LEVEL: 'silent' };
      const r = await runBaton(['init', '--data', join(tmp.dir, 'data')], { env });
      expect(r.code, r.stderr).toBe(0);
      const db = await admin.query<{ n: string }>({ text: 'SELECT max(version)::text AS n FROM ' + `"${s.schema}".schema_migrations` });
      expect(Number(db.rows[0]!.n)).toBe(LATEST);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${s.schema}" CASCADE`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => undefined);
      await admin.end();
    }
  });

  it('PostgreSQL with secrets from the environment (no secrets.json): the CLI finds the hub after init, and a second init changes nothing', async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    const env = {
      BATON_DATABASE_URL: s.url,
      BATON_DATABASE_SCHEMA: s.schema,
      BATON_KEY_PEPPER: 'a'.repeat(64),
      BATON_JWT_SECRET: 'b'.repeat(64),
      BATON_LOG_LEVEL: 'silent',
    };
    expect((await runBaton(['init', '--data', data], { env })).code).toBe(0);
    expect(existsSync(join(data, 'secrets.json'))).toBe(false);
    const list = await runBaton(['task', 'list', '--data', data], { env });
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    const again = await runBaton(['init', '--data', data], { env });
    expect(again.stderr).toMatch(/already holds a Baton hub; nothing to do/);
  });

  it("PostgreSQL: a schema holding another application's tables is refused with what to do, and left as it was", async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const admin = new pg.Client({ connectionString: s.url });
    await admin.connect();
    const tablesOf = async (): Promise<string[]> =>
      (await admin.query<{ t: string }>({ text: 'SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', values: [s.schema] })).rows.map((r) => r.t);
    try {
      await admin.query(`CREATE SCHEMA "${s.schema}"`);
      await admin.query(`CREATE TABLE "${s.schema}".tasks (id serial PRIMARY KEY, body text)`);
      await admin.query(`CREATE TABLE "${s.schema}".users (id serial PRIMARY KEY)`);
      const env = { BATON_DATABASE_URL: s.url, BATON_DATABASE_SCHEMA: s.schema, BATON_LOG_LEVEL: 'silent' };
      let r = await runBaton(['migrate'], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`PostgreSQL schema "${s.schema}" already holds tables Baton did not create (tasks): give Baton a schema of its own`);
      expect(await tablesOf()).toEqual(['tasks', 'users']);
      // A Rails-style schema_migrations (version varchar, nothing else).
      await admin.query(`DROP TABLE "${s.schema}".tasks`);
      await admin.query(`CREATE TABLE "${s.schema}".schema_migrations (version varchar PRIMARY KEY)`);
      r = await runBaton(['migrate'], { env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`holds another application's schema_migrations table`);
      expect(await tablesOf()).toEqual(['schema_migrations', 'users']);
    } finally {
      await admin.end();
    }
  });

  it('PostgreSQL: init keeps the data in the named schema; doctor reads it there, and says when it cannot', async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    const env = { BATON_DATABASE_URL: s.url, BATON_DATABASE_SCHEMA: s.schema, BATON_LOG_LEVEL: 'silent' };
    expect((await runBaton(['init', '--data', data], { env })).code).toBe(0);
    expect(existsSync(join(data, 'baton.db'))).toBe(false);
    const doctor = await runBaton(['doctor', '--data', data], { env });
    expect(doctor.stdout).toContain(`schema: PostgreSQL schema ${s.schema}: version ${LATEST} (current)`);
    expect(doctor.stdout).toMatch(/ok {3}database: answers/);
    expect(doctor.stdout).toMatch(/ok {3}writable: the role can write/);
    // A role whose sessions are read-only: reads (and the checks above) pass, every write would
    // answer storage_readonly; doctor says so.
    const role = `${s.schema}_ro`;
    const admin = new pg.Client({ connectionString: s.url });
    await admin.connect();
    try {
      await admin.query(`CREATE ROLE "${role}" LOGIN PASSWORD 'ro-pw-for-test'`);
      await admin.query(`GRANT USAGE ON SCHEMA "${s.schema}" TO "${role}"`);
      await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${s.schema}" TO "${role}"`);
      await admin.query(`ALTER ROLE "${role}" SET default_transaction_read_only = on`);
      const url = new URL(s.url);
      url.username = role;
      url.password = 'ro-pw-for-test';
      const ro = await runBaton(['doctor', '--data', data], { env: { ...env, BATON_DATABASE_URL: url.href } });
      expect(ro.code).toBe(1);
      expect(ro.stdout).toMatch(/FAIL writable: the database is read-only for this role/);
    } finally {
      await admin.query(`REVOKE ALL ON ALL TABLES IN SCHEMA "${s.schema}" FROM "${role}"`).catch(() => undefined);
      await admin.query(`REVOKE ALL ON SCHEMA "${s.schema}" FROM "${role}"`).catch(() => undefined);
      await admin.query(`DROP ROLE IF EXISTS "${role}"`).catch(() => undefined);
      await admin.end();
    }
    const down = await runBaton(['doctor', '--data', data], { env: { ...env, BATON_DATABASE_URL: 'postgres://postgres:hunter2@127.0.0.1:1/test' } });
    expect(down.stdout).toMatch(/FAIL database: PostgreSQL \(databaseUrl\) cannot be read/);
    expect(down.stdout + down.stderr).not.toMatch(/hunter2/);
    // A second init finds the hub (its data dir holds secrets, not baton.db) and changes nothing.
    const again = await runBaton(['init', '--data', data], { env });
    expect(again.stderr).toMatch(/already holds a Baton hub; nothing to do/);
    // baton setup and its drift check work on a PostgreSQL hub too: its key is checked, no drift.
    const project = join(tmp.dir, 'project');
    mkdirSync(project);
    expect((await runBaton(['setup', 'mcp-json', '--agent', 'pg-agent', '--data', data, '--project-dir', project], { env, cwd: project })).code).toBe(0);
    const check = await runBaton(['setup', '--check', '--project-dir', project], { env, cwd: project });
    expect(check.stdout + check.stderr).not.toMatch(/holds no Baton/);
    expect(check.stdout).toMatch(/^ok +mcp-json /m);
  });

  it('baton serve --store: the hub keeps its data in PostgreSQL (tasks land in the schema; no baton.db), and stops on SIGTERM', async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    const { child, url, exit: exited } = await spawnServe(['--data', data, '--store', s.url], { BATON_DATABASE_SCHEMA: s.schema, BATON_LOG_LEVEL: 'warn' });
    try {
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const key = readFileSync(join(data, 'admin-key.txt'), 'utf8').trim();
      const res = await fetch(`${url}/api/v1/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tasks: [{ title: 'kept in postgres' }] }),
      });
      expect(res.status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(existsSync(join(data, 'baton.db'))).toBe(false);
    const client = new pg.Client({ connectionString: s.url });
    await client.connect();
    try {
      const r = await client.query<{ n: string }>({ text: `SELECT count(*) AS n FROM "${s.schema}".tasks WHERE status = 'ready'` });
      expect(Number(r.rows[0]!.n)).toBe(1);
    } finally {
      await client.end();
    }
  });

  it('SQLite: needs an existing data dir, and finds a fresh one current', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    const env = { BATON_LOG_LEVEL: 'silent' };
    const none = await runBaton(['migrate', '--data', data], { env });
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/baton init/);
    expect(existsSync(join(data, 'baton.db'))).toBe(false);
    expect((await runBaton(['init', '--data', data], { env })).code).toBe(0);
    const r = await runBaton(['migrate', '--data', data], { env });
    expect(r.stdout).toBe(`sqlite: applied 0 migrations; schema version ${LATEST} (current)\n`);
  });

  it('refuses a store URL that is not PostgreSQL, naming the setting and not the value', async () => {
    const r = await runBaton(['migrate', '--store', 'mysql://root@db/hunter2'], { env: { BATON_LOG_LEVEL: 'silent' } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/databaseUrl/);
    expect(r.stderr).not.toMatch(/hunter2/);
  });

  it('refuses a --store URL with a password (the process list would show it), pointing at BATON_DATABASE_URL', async () => {
    for (const cmd of [['migrate'], ['serve', '--port', '0'], ['mcp'], ['backup', 'create', '--out', '/tmp/never.bak'], ['backup', 'restore', '/tmp/never.bak']]) {
      const r = await runBaton([...cmd, '--store', 'postgres://baton:hunter2@127.0.0.1:1/x'], { env: { BATON_LOG_LEVEL: 'silent' } });
      expect(r.code, cmd[0]).not.toBe(0);
      expect(r.stderr).toMatch(/BATON_DATABASE_URL/);
      expect(r.stderr).not.toMatch(/hunter2/);
    }
  });
});
