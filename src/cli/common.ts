import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BatonError, ERROR_CODES, type ErrorCode } from '../core/errors.js';
import { ConfigError, ConfigSchema, loadConfig, type Config } from '../config.js';
import { resolveSecrets } from '../auth/secrets.js';
import { DATA_DIR_NAME, DB_FILE, DataDirError, STORE_MARKER, findDataDir } from '../os/datadir.js';

/**
 * One-shot CLI commands log nothing unless asked (BATON_LOG_LEVEL): their stderr is the user's
 * channel, and server logs (stacks, SQL, paths) must not reach it (S27). Errors are printed as a
 * stable code and a short message instead.
 */
export function cliLogLevel(): string | undefined {
  return process.env.BATON_LOG_LEVEL === undefined || process.env.BATON_LOG_LEVEL === '' ? 'silent' : undefined;
}

/** Where a command's data dir came from. */
export type DataDirSource = '--data' | 'BATON_DATA' | 'config file' | 'found' | 'new';

export interface LocatedConfig {
  config: Config;
  /** Absolute. */
  dataDir: string;
  source: DataDirSource;
  /** The `.baton` paths looked at walking up (when neither --data, BATON_DATA nor a config file named one). */
  tried: string[];
}

/**
 * The config of a CLI command, its data dir resolved like git's `.git`: `--data`, else
 * `BATON_DATA`, else a config file's `dataDir`, else the nearest `.baton` from the working
 * directory up to the root; `new` when none exists (`./.baton` is where one would be created).
 */
export function locateConfig(
  flags: { data?: string | undefined; config?: string | undefined },
  extra: Record<string, unknown> = {},
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): LocatedConfig {
  const config = loadConfig({ file: flags.config, env, flags: { ...extra, dataDir: flags.data } });
  const explicit: DataDirSource | null =
    flags.data !== undefined ? '--data' : (env.BATON_DATA ?? '') !== '' ? 'BATON_DATA' : config.dataDir !== DEFAULT_DATA_DIR ? 'config file' : null;
  if (explicit !== null) {
    const dataDir = resolve(cwd, config.dataDir);
    return { config: { ...config, dataDir }, dataDir, source: explicit, tried: [] };
  }
  const { found, tried } = findDataDir(cwd);
  const dataDir = found ?? resolve(cwd, DATA_DIR_NAME);
  return { config: { ...config, dataDir }, dataDir, source: found === null ? 'new' : 'found', tried };
}

const DEFAULT_DATA_DIR = ConfigSchema.shape.dataDir.parse(undefined);

/**
 * For every command but `serve`, `mcp` and `init`: the data dir must hold a Baton database;
 * none is ever created here (that would silently start a second hub with a new admin key).
 */
export function requireDataDir(loc: LocatedConfig): LocatedConfig {
  if (loc.source === 'new') {
    throw new DataDirError(
      `no Baton data dir found; looked for:\n${loc.tried.map((t) => `  ${t}`).join('\n')}\n` +
        'Run `baton init` (here) or `baton serve` to create one, or point to one with --data <dir> or BATON_DATA.',
    );
  }
  if (existsSync(loc.dataDir) && !statSync(loc.dataDir).isDirectory()) {
    throw new DataDirError(`the data dir ${loc.dataDir} (from ${loc.source}) is not a directory: pass --data <dir> or set BATON_DATA to a directory`);
  }
  // With PostgreSQL the data lives in the database and the data dir holds the hub's secrets
  // (the key pepper every key hash depends on) or, when they come from the environment, the
  // mark a start leaves (store.json): those mark a hub's data dir then.
  if (!hubExists(loc.config)) {
    throw new DataDirError(
      `no Baton database in ${loc.dataDir} (from ${loc.source === 'found' ? 'the nearest .baton' : loc.source}). ` +
        `Run \`baton init --data ${loc.dataDir}\` or \`baton serve\` to create one, or check the path.`,
    );
  }
  return loc;
}

/**
 * The files whose presence makes a data dir a hub's: the SQLite database, or (PostgreSQL) the
 * secrets or the mark a start leaves (store.json; secrets may come from the environment).
 */
function storeMarkers(config: Config): string[] {
  return config.databaseUrl === undefined ? [DB_FILE] : ['secrets.json', STORE_MARKER];
}

/** Whether the data dir of `config` belongs to a hub that was started (its store exists). */
export function hubExists(config: Config): boolean {
  const dir = resolve(config.dataDir);
  return storeMarkers(config).some((f) => existsSync(join(dir, f)));
}

/**
 * The secrets check `Hub.open` makes (openDataProtection → resolveSecrets), for `init` and
 * `doctor`: a secrets.json missing beside an existing database, unreadable, not JSON or not a
 * Baton secrets file throws the DataDirError that stops serve and mcp. Creates nothing: with no
 * database and no secrets file there is nothing to check (a first start generates both).
 */
export function checkHubSecrets(config: Config, dbExists: boolean): void {
  const dataDir = resolve(config.dataDir);
  if (!dbExists && !existsSync(join(dataDir, 'secrets.json'))) return;
  resolveSecrets(dataDir, { env: process.env, production: config.env === 'production', dbExists });
}

/** `serve`, `mcp`, `init`: say on stderr which data dir is used, and when it is new. */
export function announceDataDir(loc: LocatedConfig, always: boolean): void {
  const isNew = !hubExists(loc.config);
  if (!isNew && !always) return;
  const from = loc.source === 'found' ? '' : loc.source === 'new' ? '' : ` (from ${loc.source})`;
  process.stderr.write(isNew ? `baton: creating a new data dir in ${loc.dataDir}${from}\n` : `baton: data dir ${loc.dataDir}${from}\n`);
}

/**
 * The key a command runs with: `BATON_TOKEN`, else the file `BATON_TOKEN_FILE` names (what
 * `baton setup` writes into clients' configs, so that no key sits in a file that gets
 * committed). The file holds a `BATON_TOKEN=…` line (a `.env` file a shell can source) or the
 * bare key. An unreadable file or one without a key is an error, never "no credentials".
 */
export function tokenFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const direct = env.BATON_TOKEN;
  if (direct !== undefined && direct !== '') return direct;
  const file = env.BATON_TOKEN_FILE;
  if (file === undefined || file === '') return undefined;
  return readTokenFile(file);
}

/** The key in a token file (see tokenFromEnv); throws DataDirError saying what is wrong. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new DataDirError(`cannot read the key file ${file} (${code}): run \`baton setup <client>\` again, or set BATON_TOKEN`);
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?BATON_TOKEN=(['"]?)([^'"]*)\1$/.exec(line);
    if (m !== null) return m[2]!;
    if (!line.includes('=')) return line;
  }
  throw new DataDirError(`the key file ${file} holds no BATON_TOKEN line: run \`baton setup <client>\` again, or set BATON_TOKEN`);
}

/**
 * `--store URL`: a password in it would sit in the process list (`/proc/<pid>/cmdline`, `ps`),
 * readable by every local user for as long as the hub runs. Refused, with where it belongs, and
 * never echoed (commander's own argument errors repeat the value).
 */
export function storeFlag(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError('--store: expected a postgres:// URL');
  }
  if (url.password !== '') {
    throw new ConfigError(
      '--store: the URL holds a password, which every local user could read in the process list: set BATON_DATABASE_URL (or databaseUrl in the config file) instead',
    );
  }
  return value;
}

/** `--url` (or BATON_URL): a running hub's http(s) URL, or a clear refusal. */
export function hubUrl(raw: string): URL {
  let base: URL;
  try {
    base = new URL(raw);
  } catch {
    throw new BatonError('invalid_input', '--url: expected the hub URL, e.g. http://127.0.0.1:7410');
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new BatonError('invalid_input', '--url: expected an http(s) URL');
  return base;
}

/**
 * GET /api/v1`path`?`query` of a running hub with the key as bearer: the JSON body, or the hub's
 * error as a BatonError (a code this Baton does not know becomes `unavailable`). No answer
 * within `timeoutMs` (a half-open connection, a hung hub) or no connection at all is
 * `unavailable`, which callers may retry; `signal` (the caller leaving) aborts as itself.
 */
export async function restGet(
  base: URL,
  key: string,
  path: string,
  query: Record<string, unknown>,
  opts: { timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<unknown> {
  const url = new URL(`/api/v1${path}`, base);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, Array.isArray(v) ? v.join(',') : String(v));
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout]);
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' }, signal });
    text = await res.text();
  } catch (err) {
    if (opts.signal?.aborted === true) throw err;
    throw new BatonError('unavailable', timeout.aborted ? `no answer from ${base.origin} within ${Math.round(opts.timeoutMs / 1000)} s` : `the hub at ${base.origin} cannot be reached`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BatonError('unavailable', `the hub answered ${res.status} without JSON`);
  }
  if (res.ok) return body;
  const e = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  const code = (ERROR_CODES as readonly unknown[]).includes(e?.code) ? (e!.code as ErrorCode) : 'unavailable';
  const details = typeof e?.details === 'object' && e.details !== null ? (e.details as Record<string, unknown>) : undefined;
  throw new BatonError(code, typeof e?.message === 'string' ? e.message.slice(0, 500) : `HTTP ${res.status}`, details);
}
