import { checkHubSecrets, cliLogLevel, locateConfig, type LocatedConfig } from './common.js';
import { existsSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { inspectDataProtection, type DoctorReport } from '../security/production.js';
import { DB_FILE, DataDirError, checkDataDir, unwritableFiles } from '../os/datadir.js';
import { NEARLY_FULL_BYTES, writableBlocks } from '../store/faults.js';
import { LATEST_MIGRATION, schemaVersion } from '../store/health.js';
import type { Db, Executor } from '../store/db.js';
import { sql } from '../store/sql.js';
import { openStore, storeConfigOf } from '../store/open.js';
import { sqliteDriver } from '../store/sqlite-driver.js';
import { sampleServerClock } from '../store/clock-sync.js';
import { systemClock } from '../core/clock.js';
import { CLOCK_OFFSET_WARN_MS, SyncedClock } from '../core/synced-clock.js';

interface DoctorFlags {
  data?: string;
  config?: string;
  host?: string;
  json?: boolean;
  deep?: boolean;
}

/** The data dir and database checks: each a line, FAIL lines make doctor exit 1. */
export interface StoreReport {
  source: LocatedConfig['source'];
  /** Where a data dir was looked for (when none was named and none was found). */
  tried: string[];
  /** `advisory`: worth saying, not a failure (e.g. a named data dir that a first start will create). */
  checks: { name: string; ok: boolean; detail: string; advisory?: boolean }[];
  ok: boolean;
}

type Check = StoreReport['checks'][number];

/** Below this much free space (or DISK_WARN_FRACTION of the file system) doctor says so: advisory. */
export const DISK_WARN_BYTES = 64 * 1024 * 1024;
export const DISK_WARN_FRACTION = 0.05;

function size(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(1)} MiB`;
}

/**
 * The free-space line from the numbers `statfs` gives for the data dir's file system (`bavail`:
 * what this user may still write). FAIL below NEARLY_FULL_BYTES, where the hub answers writes
 * with storage_full (store/faults.ts); a note below DISK_WARN_BYTES or DISK_WARN_FRACTION.
 */
export function diskSpaceCheck(dir: string, s: { bavail: number; blocks: number; bsize: number }): Check {
  const free = s.bavail * s.bsize;
  const total = s.blocks * s.bsize;
  const pct = total > 0 ? (100 * free) / total : 0;
  const detail = `${size(free)} free of ${size(total)} (${pct.toFixed(1)} %) on the file system of ${dir}`;
  if (free < NEARLY_FULL_BYTES) {
    return { name: 'disk space', ok: false, detail: `${detail}: the hub refuses writes (storage_full) below ${size(NEARLY_FULL_BYTES)}; free space there, or move the data dir to a larger disk` };
  }
  if (free < DISK_WARN_BYTES || free < total * DISK_WARN_FRACTION) {
    return { name: 'disk space', ok: true, advisory: true, detail: `${detail}: nearly full; the hub refuses writes (storage_full) below ${size(NEARLY_FULL_BYTES)}` };
  }
  return { name: 'disk space', ok: true, detail };
}

function diskSpace(dir: string): Check {
  try {
    const s = statfsSync(dir);
    return diskSpaceCheck(dir, { ...s, bavail: writableBlocks(s) }); // as the hub counts it (faults.ts)
  } catch (err) {
    return { name: 'disk space', ok: true, advisory: true, detail: `the free space of ${dir} could not be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

/** secrets.json as serve and mcp check it (common.ts checkHubSecrets): a FAIL line with their message. */
function secretsCheck(loc: LocatedConfig, dbExists: boolean): Check | null {
  try {
    checkHubSecrets(loc.config, dbExists);
  } catch (err) {
    return { name: 'secrets', ok: false, detail: err instanceof Error ? err.message : String(err) };
  }
  return null;
}

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'error';
}

/**
 * Finds the data dir, checks its files (datadir.ts: the dir writable, baton.db a SQLite file and
 * writable with its WAL/SHM), the free space and secrets.json as serve checks it, opens the
 * database read-mostly (no migration, nothing created) and runs `PRAGMA quick_check` (`integrity_check` when deep). A
 * damaged file is a FAIL line with what to do, never a stack trace.
 */
export async function inspectStore(loc: LocatedConfig, deep: boolean): Promise<StoreReport> {
  const checks: StoreReport['checks'] = [];
  const done = (): StoreReport => ({ source: loc.source, tried: loc.tried, checks, ok: checks.every((c) => c.ok) });
  if (loc.source === 'new') {
    const where = `none found; looked for ${loc.tried.join(', ')}`;
    checks.push({ name: 'data dir', ok: false, detail: `${where}: run \`baton init\` or \`baton serve\` to create one, or pass --data <dir>` });
    return done();
  }
  if (!existsSync(loc.dataDir)) {
    checks.push({ name: 'data dir', ok: true, advisory: true, detail: `${loc.dataDir} does not exist yet (\`baton init\` or the first \`baton serve\` creates it)` });
    return done();
  }
  if (loc.config.databaseUrl !== undefined) return inspectPostgres(loc, checks, done);
  try {
    const { dbExists } = await checkDataDir(loc.dataDir);
    checks.push({ name: 'data dir', ok: true, detail: `${loc.dataDir} (writable)` });
    checks.push(diskSpace(loc.dataDir));
    for (const problem of unwritableFiles(loc.dataDir)) checks.push({ name: 'database', ok: false, detail: problem });
    const secrets = secretsCheck(loc, dbExists);
    if (secrets !== null) checks.push(secrets);
    if (!dbExists) {
      checks.push({ name: 'database', ok: true, advisory: true, detail: `no ${DB_FILE} yet (\`baton init\` or the first \`baton serve\` creates it)` });
      return done();
    }
  } catch (err) {
    if (!(err instanceof DataDirError)) throw err;
    checks.push({ name: 'data dir', ok: false, detail: err.message });
    return done();
  }
  // Which driver opens the file: a missing one is said as such, not as an unreadable database.
  try {
    const driver = sqliteDriver();
    checks.push({ name: 'sqlite driver', ok: true, detail: `${driver === 'node' ? 'node:sqlite' : 'better-sqlite3'} on Node ${process.version}` });
  } catch (err) {
    checks.push({ name: 'sqlite driver', ok: false, detail: (err as Error).message });
    return done();
  }
  let db: Db | null = null;
  try {
    db = await openStore({ file: join(loc.dataDir, DB_FILE) });
    const version = await db.read(schemaVersion);
    checks.push({
      name: 'schema',
      ok: version <= LATEST_MIGRATION,
      detail:
        version === LATEST_MIGRATION
          ? `version ${version} (current)`
          : version < LATEST_MIGRATION
            ? `version ${version}; this Baton migrates it to ${LATEST_MIGRATION} on its next start`
            : `version ${version} is newer than this Baton (${LATEST_MIGRATION}): upgrade Baton`,
    });
  } catch (err) {
    checks.push({
      name: 'database',
      ok: false,
      detail: `${DB_FILE} cannot be opened (${sqliteCode(err)}): restore it from a backup; \`sqlite3 ${DB_FILE} .recover\` may save what is readable`,
    });
  }
  if (db !== null) {
    const r = await db.checkIntegrity(deep);
    const name = deep ? 'integrity (integrity_check)' : 'integrity (quick_check)';
    checks.push(
      r.ok
        ? { name, ok: true, detail: 'ok' }
        : { name, ok: false, detail: `damaged: ${r.problems.slice(0, 5).join('; ')}. Stop the hub, back up the data dir, and restore ${DB_FILE} from a backup (\`sqlite3 ${DB_FILE} .recover\` may save what is readable)` },
    );
    await db.close().catch(() => undefined);
  }
  return done();
}

/**
 * Whether the hub could write (PostgreSQL): a read-only session (`default_transaction_read_only`,
 * a standby) or a role without INSERT on its tables makes every write answer `storage_readonly`,
 * while reads, and the checks above, pass.
 */
async function writableCheck(ex: Executor): Promise<Check> {
  const row = await ex.get<{ ro: string; standby: boolean; ins: boolean }>(
    sql`SELECT current_setting('transaction_read_only') AS ro, pg_is_in_recovery() AS standby, has_table_privilege('tasks', 'INSERT') AS ins`,
  );
  if (row?.standby === true) return { name: 'writable', ok: false, detail: 'the database server is a standby (read-only): point databaseUrl at the primary' };
  if (row?.ro === 'on') return { name: 'writable', ok: false, detail: 'the database is read-only for this role (default_transaction_read_only = on): writes answer storage_readonly' };
  if (row?.ins !== true) return { name: 'writable', ok: false, detail: "this role may not add rows to Baton's tables: grant it write access to the schema's tables" };
  return { name: 'writable', ok: true, detail: 'the role can write' };
}

/**
 * A PostgreSQL hub: the data dir holds its secrets; the store is the database. Connects (the URL
 * is never printed: it may hold a password), reads the schema version, and runs the store's
 * check (the server checks its own pages). Nothing is migrated or created.
 */
async function inspectPostgres(loc: LocatedConfig, checks: StoreReport['checks'], done: () => StoreReport): Promise<StoreReport> {
  checks.push({ name: 'data dir', ok: true, detail: `${loc.dataDir} (secrets; the data is in PostgreSQL)` });
  const secrets = secretsCheck(loc, false);
  if (secrets !== null) checks.push(secrets);
  let db: Db | null = null;
  try {
    db = await openStore(storeConfigOf(loc.config, loc.dataDir));
    const version = await db.read(schemaVersion);
    checks.push({
      name: 'schema',
      ok: version <= LATEST_MIGRATION,
      detail: `PostgreSQL schema ${loc.config.databaseSchema}: version ${version}${version === LATEST_MIGRATION ? ' (current)' : version < LATEST_MIGRATION ? `; \`baton migrate\` or the next start takes it to ${LATEST_MIGRATION}` : ` is newer than this Baton (${LATEST_MIGRATION}): upgrade Baton`}`,
    });
    const r = await db.checkIntegrity(false);
    checks.push({ name: 'database', ok: r.ok, detail: r.ok ? 'answers; schema readable' : r.problems.slice(0, 3).join('; ') });
    if (version > 0) checks.push(await db.read(writableCheck));
    checks.push(await clockCheck(db));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    checks.push({ name: 'database', ok: false, detail: `PostgreSQL (databaseUrl) cannot be read: ${why}` });
  } finally {
    await db?.close().catch(() => undefined);
  }
  return done();
}

/**
 * How far this host's clock is off the database server's. The hub runs on the database's clock
 * (core/synced-clock.ts), so an offset harms nothing; a large one is worth a note (NTP).
 */
async function clockCheck(db: Db): Promise<Check> {
  let samples: Awaited<ReturnType<typeof sampleServerClock>>;
  try {
    samples = await sampleServerClock(db, systemClock);
  } catch (err) {
    // Advisory however it ends: a failed reading is no verdict on the database (checked above).
    return { name: 'clock', ok: true, advisory: true, detail: `the database server's clock could not be read: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (samples === null || samples.length === 0) return { name: 'clock', ok: true, advisory: true, detail: 'the database returned no clock reading' };
  const s = new SyncedClock(systemClock).adopt(samples);
  const offset = Math.round(s.offsetMs);
  const detail = `this host is ${offset >= 0 ? offset : -offset} ms ${offset >= 0 ? 'behind' : 'ahead of'} the database server (round trip ${s.rttMs.toFixed(1)} ms); the hub keeps the database's time`;
  return Math.abs(s.offsetMs) > CLOCK_OFFSET_WARN_MS ? { name: 'clock', ok: true, advisory: true, detail: `${detail}: check NTP on this host or the database server` } : { name: 'clock', ok: true, detail };
}

function render(r: DoctorReport, store: StoreReport): string {
  const lines: string[] = [];
  lines.push(`mode: ${r.env}`);
  lines.push(`data dir: ${r.dataDir}${store.source === 'new' ? ' (none found)' : ` (${store.source === 'found' ? 'nearest .baton' : `from ${store.source}`})`}`);
  lines.push('store:');
  for (const c of store.checks) lines.push(`  ${c.advisory === true ? 'note' : c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`);
  lines.push('file modes:');
  if (r.modes.length === 0) lines.push('  (data dir does not exist yet)');
  for (const m of r.modes) lines.push(`  ${m.ok ? 'ok  ' : 'OPEN'} ${m.mode} ${m.path}${m.ok ? '' : ` (want ${m.want})`}`);
  lines.push('secrets:');
  for (const s of r.secrets) {
    const from = s.source === 'env' ? s.env : s.source === 'env_file' ? `${s.env}_FILE (${s.path ?? ''})` : s.source === 'data_file' ? `generated file ${s.path ?? ''}` : s.source === 'derived' ? 'derived from the key pepper (secrets.json)' : 'missing';
    lines.push(`  ${s.name}: ${from}${s.source === 'missing' ? '' : `, ${s.bytes} bytes`}${s.weak !== null && s.source !== 'missing' ? ` — weak: ${s.weak}` : ''}`);
  }
  const e = r.encryption;
  const src = e.source === 'env' ? 'BATON_ENCRYPTION_KEYS' : e.source === 'env_file' ? `BATON_ENCRYPTION_KEYS_FILE (${e.path ?? ''})` : e.source === 'data_file' ? `keyring file ${e.path ?? ''}` : 'no keys';
  lines.push(`encryption at rest: ${e.on ? 'on' : 'off'} (${src})${e.on ? `; current key ${e.current ?? ''}; key ids ${e.ids.join(', ')}` : ''}`);
  if (e.error !== undefined) lines.push(`  keyring error: ${e.error}`);
  lines.push(`bind address: ${r.tls.host} (${r.tls.loopback ? 'loopback' : 'beyond loopback'})`);
  lines.push(`TLS: ${r.tls.configured ? 'on (tlsCert, tlsKey)' : 'off'}${r.tls.allowInsecureHttp ? '; allowInsecureHttp set' : ''}`);
  lines.push(`production checks (${r.production.checked ? 'enforced: production mode' : 'advisory: development mode'}):`);
  if (r.production.problems.length === 0) lines.push('  all pass');
  for (const p of r.production.problems) lines.push(`  FAIL ${p}`);
  lines.push(r.ok && store.ok ? 'doctor: ok' : 'doctor: problems found');
  return lines.join('\n') + '\n';
}

/**
 * `baton doctor`: file modes, secret sources, encryption and key ids, TLS and bind address, and
 * the production checks, for the configuration this command would start with; the data dir,
 * the database file and its integrity (`--deep`: full integrity_check). Changes nothing. Exits 1
 * on any FAIL of the store, when a production check fails in production mode (advisory in
 * development), or when a file is open.
 */
export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('Check the data dir, the database (integrity) and production readiness of this configuration')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--host <host>', 'bind address to check')
    .option('--json', 'print the report as one line of JSON')
    .option('--deep', 'run the full integrity_check (reads every page) instead of quick_check')
    .action(async (opts: DoctorFlags) => {
      const loc = locateConfig(opts, { host: opts.host, logLevel: cliLogLevel() });
      const store = await inspectStore(loc, opts.deep === true);
      const report = inspectDataProtection(loc.config, loc.dataDir);
      process.stdout.write(opts.json === true ? JSON.stringify({ ...report, store, ok: report.ok && store.ok }) + '\n' : render(report, store));
      if (!report.ok || !store.ok) process.exitCode = 1;
    });
}
