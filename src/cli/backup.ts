import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { BatonError } from '../core/errors.js';
import { DataDirError } from '../os/datadir.js';
import type { Manifest } from '../store/backup.js';
import { DB_FILE, SECRET_FILES, backendOf, openStore, storeConfigOf } from '../store/open.js';
import { cliLogLevel, locateConfig, requireDataDir, storeFlag } from './common.js';

/** Loaded when a backup command runs, not when the CLI starts (`baton mcp` starts through the same program). */
const backupModule = () => import('../store/backup.js');

/** The data-dir files a backup carries: the hub's secrets (key pepper, signing secret, keyring). */

interface KeyFlags {
  keyFile?: string;
}

interface StoreFlags extends KeyFlags {
  data?: string;
  config?: string;
  store?: string;
}

/**
 * The backup passphrase: `--key-file`, else the file BATON_BACKUP_KEY_FILE names, else
 * BATON_BACKUP_KEY. Never the hub's own secrets (they are inside the backup) and never printed.
 */
async function passphrase(flags: KeyFlags, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const { checkPassphrase } = await backupModule();
  const file = flags.keyFile ?? (env.BATON_BACKUP_KEY_FILE !== '' ? env.BATON_BACKUP_KEY_FILE : undefined);
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new DataDirError(`cannot read the backup key file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    return checkPassphrase(text.trim());
  }
  const direct = env.BATON_BACKUP_KEY;
  if (direct !== undefined && direct !== '') return checkPassphrase(direct);
  throw new BatonError('invalid_input', 'a backup key is required: --key-file <file> (or BATON_BACKUP_KEY_FILE / BATON_BACKUP_KEY); keep it apart from the backups');
}

function summary(m: Manifest): string {
  const rows = m.tables.reduce((n, t) => n + t.rows, 0);
  const by = (name: string): number => m.tables.find((t) => t.name === name)?.rows ?? 0;
  return (
    `${m.backend} backup of ${new Date(m.created_at).toISOString()}, schema version ${m.schema_version}: ` +
    `${rows} rows in ${m.tables.length} tables (tasks ${by('tasks')}, messages ${by('messages')}, audit ${by('audit')}, keys ${by('tokens')}); ` +
    `files: ${m.files.map((f) => f.name).join(', ') || 'none'}`
  );
}

/** Writes through a temporary file and a rename: a crash never leaves half a backup under the final name. */
function writeAtomic(file: string, bytes: Buffer): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes, { mode: 0o600 });
  renameSync(tmp, file);
}

function storeConfig(opts: StoreFlags) {
  return locateConfig({ data: opts.data, config: opts.config }, { logLevel: cliLogLevel(), databaseUrl: opts.store });
}

export function registerBackupCommands(program: Command): void {
  const backup = program.command('backup').description('Encrypted, integrity-checked backups of the store and the hub\'s secrets (online; either backend)');

  backup
    .command('create')
    .description('Write an encrypted backup of the store (a consistent snapshot, taken while the hub runs) and the data dir\'s secrets')
    .requiredOption('--out <file>', 'the backup file to write (refuses an existing file)')
    .option('--key-file <file>', 'file holding the backup passphrase (default BATON_BACKUP_KEY_FILE, or BATON_BACKUP_KEY)')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--store <url>', 'a postgres:// URL (default BATON_DATABASE_URL; unset: the SQLite file in the data dir)', storeFlag)
    .action(async (opts: StoreFlags & { out: string }) => {
      const key = await passphrase(opts);
      const { createBackup } = await backupModule();
      if (existsSync(opts.out)) throw new BatonError('conflict', `${opts.out} already exists: choose a new file name`);
      // PostgreSQL: the data lives in the database; the data dir only adds its secrets files when
      // it has them (in production they come from the environment and are not in the backup).
      const located = storeConfig(opts);
      const loc = backendOf({ url: located.config.databaseUrl }) === 'postgres' ? located : requireDataDir(located);
      const files = new Map<string, Buffer>();
      for (const name of SECRET_FILES) {
        const path = join(loc.dataDir, name);
        if (existsSync(path)) files.set(name, readFileSync(path));
      }
      const db = await openStore(storeConfigOf(loc.config, loc.dataDir));
      try {
        const { bytes, manifest } = await createBackup(db, key, files);
        writeAtomic(opts.out, bytes);
        process.stdout.write(`wrote ${opts.out}: ${summary(manifest)}\n`);
      } finally {
        await db.close();
      }
    });

  backup
    .command('verify')
    .description('Check a backup without restoring it: decrypts it, checks its integrity tag and its manifest (row counts, hashes)')
    .argument('<file>', 'the backup file')
    .option('--key-file <file>', 'file holding the backup passphrase (default BATON_BACKUP_KEY_FILE, or BATON_BACKUP_KEY)')
    .option('--json', 'print the manifest as JSON')
    .action(async (file: string, opts: KeyFlags & { json?: boolean }) => {
      const { openBackup } = await backupModule();
      const contents = openBackup(readBackupFile(file), await passphrase(opts));
      process.stdout.write(opts.json === true ? `${JSON.stringify({ ok: true, manifest: contents.manifest })}\n` : `ok: ${summary(contents.manifest)}\n`);
    });

  backup
    .command('restore')
    .description('Restore a backup into an empty data dir (SQLite) or an empty PostgreSQL schema (--store); the other backend than the backup\'s is fine')
    .argument('<file>', 'the backup file')
    .option('--key-file <file>', 'file holding the backup passphrase (default BATON_BACKUP_KEY_FILE, or BATON_BACKUP_KEY)')
    .option('--data <dir>', 'the data directory to restore into (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--store <url>', 'restore into this PostgreSQL (default BATON_DATABASE_URL; unset: SQLite in the data dir)', storeFlag)
    .option('--force', 'replace what the target holds (its rows and secrets files)')
    .action(async (file: string, opts: StoreFlags & { force?: boolean }) => {
      const { assertRestorable, openBackup, restoreTables } = await backupModule();
      const { MIGRATIONS } = await import('../store/migrations.js');
      const contents = openBackup(readBackupFile(file), await passphrase(opts));
      // Before anything is created in the target.
      assertRestorable(contents.manifest);
      const loc = storeConfig(opts);
      const force = opts.force === true;
      const backend = backendOf({ url: loc.config.databaseUrl });
      const taken = [...(backend === 'sqlite' ? [DB_FILE] : []), ...SECRET_FILES].filter((f) => existsSync(join(loc.dataDir, f)));
      if (taken.length > 0 && !force) {
        throw new BatonError('conflict', `${loc.dataDir} already holds ${taken.join(', ')}: restore into an empty data dir, or pass --force to replace it`);
      }
      mkdirSync(loc.dataDir, { recursive: true, mode: 0o700 });
      const db = await openStore(storeConfigOf(loc.config, loc.dataDir));
      let restored: number;
      try {
        await db.migrate(MIGRATIONS, Date.now());
        restored = await restoreTables(db, contents, force);
      } finally {
        await db.close();
      }
      // The secrets after the rows: a failed restore leaves no secrets beside an empty store.
      for (const [name, content] of contents.files) writeAtomic(join(loc.dataDir, name), content);
      process.stdout.write(`restored ${restored} rows into ${backend === 'sqlite' ? loc.dataDir : `PostgreSQL (schema ${loc.config.databaseSchema})`}; ${summary(contents.manifest)}\n`);
    });
}

function readBackupFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new DataDirError(`cannot read the backup file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
