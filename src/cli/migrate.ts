import type { Command } from 'commander';
import { LATEST_MIGRATION, schemaVersion } from '../store/health.js';
import { MIGRATIONS } from '../store/migrations.js';
import { backendOf, openStore, storeConfigOf } from '../store/open.js';
import { cliLogLevel, locateConfig, requireDataDir, storeFlag } from './common.js';

/**
 * `baton migrate`: applies the pending schema migrations and exits. Every start does the same
 * (under a lock: SQLite's write lock, PostgreSQL's advisory lock), so this is for operators who
 * upgrade the schema before rolling new instances out, or check that it is current. A SQLite
 * store needs an existing data dir (none is created here); a PostgreSQL store needs only its URL.
 */
export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('Apply pending schema migrations to the store (the data dir\'s SQLite file, or --store / BATON_DATABASE_URL) and exit')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--store <url>', 'a postgres:// URL (default BATON_DATABASE_URL; unset: the SQLite file in the data dir)', storeFlag)
    .action(async (opts: { data?: string; config?: string; store?: string }) => {
      const loc = locateConfig({ data: opts.data, config: opts.config }, { logLevel: cliLogLevel(), databaseUrl: opts.store });
      const config = backendOf({ url: loc.config.databaseUrl }) === 'sqlite' ? requireDataDir(loc).config : loc.config;
      const db = await openStore(storeConfigOf(config, config.dataDir));
      try {
        const applied = await db.migrate(MIGRATIONS, Date.now());
        const version = await db.read(schemaVersion);
        process.stdout.write(
          `${db.profile.name}: applied ${applied} migration${applied === 1 ? '' : 's'}; schema version ${version}` +
            `${version === LATEST_MIGRATION ? ' (current)' : ''}\n`,
        );
      } finally {
        await db.close();
      }
    });
}
