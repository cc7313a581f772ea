/**
 * `baton backup create|verify|restore` (S33): an online, encrypted, integrity-checked dump that
 * restores into either backend. Proven through the CLI as a child process against real SQLite
 * files and a real PostgreSQL schema: the restored store holds the same rows, its audit chain
 * verifies, the original admin key works there; a changed byte, a wrong key, and a non-empty
 * target are refused with a clear error.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TABLES, assertRestorable, columnsOf, createBackup, dumpTables, openBackup } from '../../src/store/backup.js';
import { LATEST_MIGRATION } from '../../src/store/health.js';
import { openStore } from '../../src/store/open.js';
import { call, createKey, openHub, pgSchema, runBaton, tempDir, type TestHub } from '../helpers.js';

const KEY = 'correct horse battery staple 42';
const ENV = { BATON_BACKUP_KEY: KEY, BATON_LOG_LEVEL: undefined };

/** Every table's rows, sorted, so two stores compare whatever order they return rows in. */
async function snapshot(store: { url?: string; schema?: string; file: string }): Promise<Record<string, string[]>> {
  const db = await openStore(store);
  try {
    const { tables } = await dumpTables(db);
    return Object.fromEntries(Object.entries(tables).map(([name, t]) => [name, t.rows.map((r) => JSON.stringify(r)).sort()]));
  } finally {
    await db.close();
  }
}

async function populate(t: TestHub): Promise<void> {
  const created = await call<{ tasks: { id: string }[] }>(t.hub, t.admin, 'task_create', { tasks: [{ title: 'parent' }, { title: 'second', priority: 3 }] });
  await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'child', parent_id: created.tasks[0]!.id }] });
  // An agent exists once its key is first used; then it can be written to.
  const worker = await t.hub.authenticate(await createKey(t, 'w1', 'worker'));
  await call(t.hub, worker, 'whoami', {});
  await call(t.hub, t.admin, 'message_send', { to_agents: ['w1'], body: 'hello there' });
  await call(t.hub, t.admin, 'memory_set', { key: 'k', value: 'v' });
}

describe('baton backup', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('lists every table and column of the live schema (a new migration cannot be left out of backups)', async () => {
    const t = await openHub({ backend: 'sqlite' });
    cleanups.push(t.close);
    const db = await openStore({ file: join(t.dir, 'data', 'baton.db') });
    try {
      const live = await db.read(async (ex) => {
        const { sql } = await import('../../src/store/sql.js');
        const tables = await ex.all<{ name: string }>(sql`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name`);
        const out: Record<string, string[]> = {};
        for (const { name } of tables) {
          out[name] = (await ex.all<{ name: string }>(sql`SELECT name FROM pragma_table_info(${name}) ORDER BY cid`)).map((c) => c.name);
        }
        return out;
      });
      expect(Object.fromEntries(TABLES.map((tb) => [tb.name, columnsOf(tb)]).sort(([a], [b]) => String(a).localeCompare(String(b))))).toEqual(live);
    } finally {
      await db.close();
    }
  });

  it('a backup of another schema version is refused before anything is created', () => {
    const manifest = { format: 1, created_at: 0, backend: 'sqlite' as const, schema_version: LATEST_MIGRATION - 1, tables: [], files: [] };
    expect(() => assertRestorable(manifest)).toThrow(/schema version .*restore it with the Baton version that made it/);
    expect(() => assertRestorable({ ...manifest, schema_version: LATEST_MIGRATION })).not.toThrow();
  });

  it('SQLite: create while the hub runs → verify → restore into a new data dir: same rows, audit chain verifies, the old admin key works', async () => {
    const t = await openHub({ backend: 'sqlite' });
    cleanups.push(t.close);
    await populate(t);
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const file = join(tmp.dir, 'hub.bak');
    const source = join(t.dir, 'data');

    // Writes go on while the backup runs: it must still be one consistent point (the restored
    // audit chain verifies, its head matching its last row).
    let writing = true;
    let written = 0;
    const writer = (async () => {
      while (writing) {
        await call(t.hub, t.admin, 'task_create', { tasks: [{ title: `during ${written}` }] });
        written++;
      }
    })();
    const made = await runBaton(['backup', 'create', '--data', source, '--out', file], { env: ENV });
    writing = false;
    await writer;
    expect(written).toBeGreaterThan(0);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/messages 1/);
    const raw = readFileSync(file);
    expect(raw.includes(Buffer.from('hello there'))).toBe(false);
    expect(raw.includes(Buffer.from('parent'))).toBe(false);

    const verified = await runBaton(['backup', 'verify', file, '--json'], { env: ENV });
    expect(verified.code).toBe(0);
    const manifest = (JSON.parse(verified.stdout) as { manifest: { tables: { name: string; rows: number }[]; files: { name: string }[] } }).manifest;
    const dumped = manifest.tables.find((x) => x.name === 'tasks')?.rows ?? 0;
    expect(dumped).toBeGreaterThanOrEqual(3);
    expect(dumped).toBeLessThanOrEqual(3 + written);
    expect(manifest.files.map((f) => f.name)).toContain('secrets.json');

    const target = join(tmp.dir, 'restored');
    const restored = await runBaton(['backup', 'restore', file, '--data', target], { env: ENV });
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);

    // The restored store is the backup's point in time: the same rows as the source had then
    // (the source has since gained the rest of the writer's tasks). Compared before anything
    // else runs there: `audit verify` is itself audited.
    const now = await snapshot({ file: join(source, 'baton.db') });
    const back = await snapshot({ file: join(target, 'baton.db') });
    expect(back.tasks).toHaveLength(dumped);
    for (const task of back.tasks!) expect(now.tasks).toContain(task);
    expect(back.messages).toEqual(now.messages);
    expect(back.tokens).toEqual(now.tokens);
    const audit = await runBaton(['audit', 'verify', '--json', '--data', target], { env: ENV });
    expect(audit.code).toBe(0);
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });

    const listed = await runBaton(['task', 'list', '--data', target, '--json'], { env: { ...ENV, BATON_TOKEN: t.adminKey } });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('child');

    // A second restore onto the same dir is refused; --force replaces it.
    const again = await runBaton(['backup', 'restore', file, '--data', target], { env: ENV });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds baton\.db.*--force/);
    expect((await runBaton(['backup', 'restore', file, '--data', target, '--force'], { env: ENV })).code).toBe(0);
  });

  it('a backup naming a file other than the hub\'s secrets (e.g. ../../.bashrc) is refused before anything is written', async () => {
    const t = await openHub({ backend: 'sqlite' });
    cleanups.push(t.close);
    const { bytes } = await createBackup(t.hub.db, KEY, new Map([['../../.bashrc', Buffer.from('echo owned')]]));
    expect(() => openBackup(bytes, KEY)).toThrow(/a file Baton does not restore/);
    const ok = await createBackup(t.hub.db, KEY, new Map([['secrets.json', Buffer.from('{}')]]));
    expect([...openBackup(ok.bytes, KEY).files.keys()]).toEqual(['secrets.json']);
  });

  it('a changed byte, a wrong key, a missing key: refused with a clear error, nothing restored', async () => {
    const t = await openHub({ backend: 'sqlite' });
    cleanups.push(t.close);
    await populate(t);
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const file = join(tmp.dir, 'hub.bak');
    expect((await runBaton(['backup', 'create', '--data', join(t.dir, 'data'), '--out', file], { env: ENV })).code).toBe(0);
    const bytes = readFileSync(file);

    for (const at of [bytes.length - 1, bytes.length - 40, bytes.indexOf(Buffer.from('"iv"')) + 8]) {
      const bad = Buffer.from(bytes);
      bad[at] = bad[at]! ^ 0x01;
      writeFileSync(join(tmp.dir, 'bad.bak'), bad);
      const v = await runBaton(['backup', 'verify', join(tmp.dir, 'bad.bak')], { env: ENV });
      expect(v.code).toBe(2);
      expect(v.stderr).toMatch(/invalid_input: the backup (failed its integrity check|header is damaged)/);
      const r = await runBaton(['backup', 'restore', join(tmp.dir, 'bad.bak'), '--data', join(tmp.dir, 'never')], { env: ENV });
      expect(r.code).toBe(2);
    }
    // A header asking scrypt for gigabytes is refused before any key is derived.
    const text = bytes.toString('latin1');
    const greedy = Buffer.from(text.replace(/"N":\d+/, `"N":${2 ** 24}`), 'latin1');
    expect(greedy.equals(bytes)).toBe(false);
    writeFileSync(join(tmp.dir, 'greedy.bak'), greedy);
    const g = await runBaton(['backup', 'verify', join(tmp.dir, 'greedy.bak')], { env: ENV });
    expect(g.code).toBe(2);
    expect(g.stderr).toMatch(/header is damaged or from an unknown format version/);

    const wrong = await runBaton(['backup', 'verify', file], { env: { ...ENV, BATON_BACKUP_KEY: 'another long passphrase!!' } });
    expect(wrong.stderr).toMatch(/integrity check.*key is wrong/);
    const none = await runBaton(['backup', 'verify', file], { env: { ...ENV, BATON_BACKUP_KEY: undefined } });
    expect(none.stderr).toMatch(/a backup key is required/);
    const short = await runBaton(['backup', 'verify', file], { env: { ...ENV, BATON_BACKUP_KEY: 'short' } });
    expect(short.stderr).toMatch(/at least 16 characters/);
    expect(readFileSync(file).equals(bytes)).toBe(true);
  });

  it('SQLite backup → PostgreSQL (the migration path) → PostgreSQL backup → SQLite: same rows, audit chain verifies on each', async () => {
    const t = await openHub({ backend: 'sqlite' });
    cleanups.push(t.close);
    await populate(t);
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const s = pgSchema();
    cleanups.push(s.drop);
    const pgEnv = { ...ENV, BATON_DATABASE_URL: s.url, BATON_DATABASE_SCHEMA: s.schema };
    const source = join(t.dir, 'data');
    const first = join(tmp.dir, 'sqlite.bak');
    expect((await runBaton(['backup', 'create', '--data', source, '--out', first], { env: ENV })).code).toBe(0);

    const pgData = join(tmp.dir, 'pg-data');
    const restored = await runBaton(['backup', 'restore', first, '--data', pgData], { env: pgEnv });
    expect(restored.stderr).toBe('');
    expect(restored.stdout).toMatch(/into PostgreSQL/);
    const want = await snapshot({ file: join(source, 'baton.db') });
    expect(await snapshot({ url: s.url, schema: s.schema, file: '' })).toEqual(want);
    const audit = await runBaton(['audit', 'verify', '--json', '--data', pgData], { env: pgEnv });
    expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });
    // Identity sequences continue after the restored rows: new writes on PostgreSQL succeed.
    const created = await runBaton(['task', 'add', '--data', pgData, '--title', 'after restore'], { env: { ...pgEnv, BATON_TOKEN: t.adminKey } });
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);

    const second = join(tmp.dir, 'pg.bak');
    const made = await runBaton(['backup', 'create', '--data', pgData, '--out', second], { env: pgEnv });
    expect(made.stdout).toMatch(/^wrote .*postgres backup/);
    const back = join(tmp.dir, 'back');
    expect((await runBaton(['backup', 'restore', second, '--data', back], { env: ENV })).code).toBe(0);
    expect(JSON.parse((await runBaton(['audit', 'verify', '--json', '--data', back], { env: ENV })).stdout)).toMatchObject({ ok: true });
    const final = await snapshot({ file: join(back, 'baton.db') });
    expect(final.tasks).toHaveLength(4);
    expect(final.messages).toEqual(want.messages);

    // PostgreSQL needs no data dir: without one (secrets from the environment) the backup holds the rows only.
    const bare = await runBaton(['backup', 'create', '--data', join(tmp.dir, 'nothing-here'), '--out', join(tmp.dir, 'bare.bak')], { env: pgEnv });
    expect(bare.stderr).toBe('');
    expect(bare.stdout).toMatch(/files: none/);

    // A PostgreSQL schema that holds data is refused too.
    const refused = await runBaton(['backup', 'restore', first, '--data', join(tmp.dir, 'other')], { env: pgEnv });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/conflict: the target store already holds data/);
  });
});
