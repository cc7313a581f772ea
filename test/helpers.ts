import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Client as V2Client, StreamableHTTPClientTransport as V2Http } from '@modelcontextprotocol/client';
import { StdioClientTransport as V2Stdio, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport as V1Stdio } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport as V1Http } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { pino } from 'pino';
import { startHttp, type HttpHandle } from '../src/api/http/server.js';
import type { Principal } from '../src/auth/principal.js';
import { ConfigSchema, type Config } from '../src/config.js';
import type { Clock } from '../src/core/clock.js';
import { Hub } from '../src/hub.js';
import type { AuditEntry } from '../src/store/journal.js';

export const BIN = resolve(import.meta.dirname, '../bin/baton.js');

export function tempDir(prefix = 'baton-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Data dir → the environment that points another process (a `baton mcp` agent, a CLI command)
 * at the store of the hub opened on that data dir: on PostgreSQL its URL and schema, so the
 * processes of a test share one store whatever the backend. stdioAgent, runBaton and testConfig add it.
 */
const storeEnvs = new Map<string, Record<string, string>>();

/** A hub's config on `dataDir`; a data dir opened by openHub on PostgreSQL keeps its store. */
export function testConfig(dataDir: string, overrides: Partial<Config> = {}): Config {
  const env = storeEnvs.get(resolve(dataDir));
  const store = env === undefined ? {} : { databaseUrl: env.BATON_DATABASE_URL, databaseSchema: env.BATON_DATABASE_SCHEMA };
  return ConfigSchema.parse({ dataDir, logLevel: 'silent', ...store, ...overrides });
}

export interface TestHub {
  hub: Hub;
  dir: string;
  adminKey: string;
  admin: Principal;
  close(): Promise<void>;
}

export type Backend = 'sqlite' | 'postgres';

/** The backend tests run on when they do not say: `BATON_TEST_BACKEND` (sqlite by default). */
export const TEST_BACKEND: Backend = process.env.BATON_TEST_BACKEND === 'postgres' ? 'postgres' : 'sqlite';

/** The PostgreSQL tests use: BATON_TEST_DATABASE_URL, else the local server (trust auth, db `test`). */
export const TEST_DATABASE_URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

let schemaSeq = 0;

/**
 * A fresh PostgreSQL schema for one hub (each test file, each hub: never shared), and how to
 * drop it. The name carries the process id, so parallel test files never meet.
 */
export function pgSchema(): { url: string; schema: string; drop: () => Promise<void> } {
  // t_<run>_…: the global setup drops whatever a run left behind (pg-setup.ts).
  const run = /^[a-z0-9]+$/.test(process.env.BATON_TEST_RUN ?? '') ? process.env.BATON_TEST_RUN! : 'x';
  const schema = `t_${run}_${process.pid}_${Date.now().toString(36)}_${schemaSeq++}`;
  return {
    url: TEST_DATABASE_URL,
    schema,
    drop: async () => {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** The config of a store on `backend` (nothing for SQLite: the data dir's file), and its cleanup. */
export function storeFor(backend: Backend): { config: Partial<Config>; drop: () => Promise<void> } {
  if (backend === 'sqlite') return { config: {}, drop: async () => undefined };
  const s = pgSchema();
  return { config: { databaseUrl: s.url, databaseSchema: s.schema }, drop: s.drop };
}

/** The store environment of the hub opened on `dataDir` (empty on SQLite). */
export function storeEnvOf(dataDir: string | undefined): Record<string, string> {
  return dataDir === undefined ? {} : (storeEnvs.get(resolve(dataDir)) ?? {});
}

export async function openHub(
  options: { clock?: Clock; config?: Partial<Config>; dir?: string; backend?: Backend; clockSync?: boolean } = {},
): Promise<TestHub> {
  const tmp = options.dir === undefined ? tempDir() : { dir: options.dir, cleanup: () => undefined };
  const store = storeFor(options.backend ?? TEST_BACKEND);
  const dataDir = resolve(tmp.dir, 'data');
  const hub = await Hub.open(testConfig(dataDir, { ...store.config, ...options.config }), {
    clock: options.clock,
    clockSync: options.clockSync,
    checkOutputs: true,
    log: pino({ level: 'silent' }),
  });
  if (store.config.databaseUrl !== undefined) {
    storeEnvs.set(dataDir, { BATON_DATABASE_URL: store.config.databaseUrl, BATON_DATABASE_SCHEMA: store.config.databaseSchema ?? 'public' });
  }
  const adminKey = hub.firstStartKey!;
  const admin = await hub.authenticate(adminKey);
  return {
    hub,
    dir: tmp.dir,
    adminKey,
    admin,
    close: async () => {
      await hub.close();
      storeEnvs.delete(dataDir);
      tmp.cleanup();
      await store.drop();
    },
  };
}

let seq = 0;
export async function call<T = Record<string, unknown>>(hub: Hub, principal: Principal, op: string, input: unknown): Promise<T> {
  return (await hub.call(op, input, principal, { requestId: `req_test${seq++}`, transport: 'internal' })) as T;
}

export async function createKey(t: TestHub, name: string, role: string, project?: string): Promise<string> {
  const out = await call<{ key: string }>(t.hub, t.admin, 'token_create', { name, role, ...(project ? { project } : {}) });
  return out.key;
}

export async function serve(hub: Hub, lean = true): Promise<HttpHandle> {
  return startHttp(hub, { host: '127.0.0.1', port: 0, lean });
}

/** A minimal view over both SDK lines' clients. */
export interface Agent {
  call(name: string, args?: Record<string, unknown>): Promise<{ isError: boolean; data: Record<string, unknown> }>;
  /** Calls and returns structured content, throwing on a tool error. */
  ok<T = Record<string, unknown>>(name: string, args?: Record<string, unknown>): Promise<T>;
  tools(): Promise<{ name: string; description?: string; inputSchema: unknown }[]>;
  close(): Promise<void>;
  protocolVersion(): string | undefined;
}

type AnyClient = V1Client | V2Client;

function wrap(client: AnyClient, version: () => string | undefined): Agent {
  const agent: Agent = {
    async call(name, args = {}) {
      const r = (await client.callTool({ name, arguments: args })) as {
        isError?: boolean;
        structuredContent?: Record<string, unknown>;
      };
      return { isError: r.isError === true, data: r.structuredContent ?? {} };
    },
    async ok<T>(name: string, args: Record<string, unknown> = {}) {
      const r = await agent.call(name, args);
      if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.data)}`);
      return r.data as T;
    },
    async tools() {
      return (await client.listTools()).tools;
    },
    close: () => client.close(),
    protocolVersion: version,
  };
  return agent;
}

export type ClientLine = 'v1' | 'v2' | 'v2-modern';

export async function httpAgent(line: ClientLine, url: string, key: string): Promise<Agent> {
  const headers = { Authorization: `Bearer ${key}` };
  const endpoint = new URL('/mcp', url);
  if (line === 'v1') {
    const client = new V1Client({ name: 'test-v1', version: '1.0.0' });
    const transport = new V1Http(endpoint, { requestInit: { headers } });
    await client.connect(transport);
    return wrap(client, () => transport.protocolVersion);
  }
  const client = new V2Client(
    { name: 'test-v2', version: '1.0.0' },
    line === 'v2-modern' ? { versionNegotiation: { mode: 'auto' } } : {},
  );
  await client.connect(new V2Http(endpoint, { requestInit: { headers } }));
  return wrap(client, () => client.getNegotiatedProtocolVersion());
}

export async function stdioAgent(line: ClientLine, dataDir: string, env: Record<string, string>): Promise<Agent> {
  const params = {
    command: process.execPath,
    args: [BIN, 'mcp', '--data', dataDir],
    env: { ...getDefaultEnvironment(), BATON_LOG_LEVEL: 'warn', ...storeEnvOf(dataDir), ...env },
    stderr: 'pipe' as const,
  };
  if (line === 'v1') {
    const client = new V1Client({ name: 'test-v1', version: '1.0.0' });
    await client.connect(new V1Stdio(params));
    return wrap(client, () => undefined);
  }
  const client = new V2Client(
    { name: 'test-v2', version: '1.0.0' },
    line === 'v2-modern' ? { versionNegotiation: { mode: 'auto' } } : {},
  );
  await client.connect(new V2Stdio(params));
  return wrap(client, () => client.getNegotiatedProtocolVersion());
}

/**
 * A wait the doorbell must end: rejects if `p` has not settled within `ms` — well under the
 * wait's own wait_ms, so neither its deadline nor a periodic re-check can pass for a wake-up.
 */
export function woken<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not woken within ${ms} ms`)), ms);
  });
  return Promise.race([p, bound]).finally(() => clearTimeout(timer));
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the `baton` CLI as a child process with execFile's pipes (stdout and stderr are not a TTY,
 * as under a service manager or CI) and a minimal environment (PATH and HOME, plus `env`): the
 * exit code and both streams. Only a spawn failure or the timeout throws.
 */
export async function runBaton(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number; uid?: number; gid?: number } = {},
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      cwd: opts.cwd,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        ...storeEnvOf(args.includes('--data') ? args[args.indexOf('--data') + 1] : undefined),
        ...opts.env,
      },
      timeout: opts.timeoutMs ?? 20_000,
      encoding: 'utf8',
      ...(opts.uid === undefined ? {} : { uid: opts.uid, gid: opts.gid }),
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err; // spawn failure or killed by the timeout: not a CLI answer
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export interface ServeChild {
  child: ChildProcess;
  /** The URL it listens on. */
  url: string;
  /** Its stderr so far (the last 64 KiB). */
  stderr: () => string;
  /** Its exit code (null: killed by a signal). */
  exit: Promise<number | null>;
}

/**
 * `baton serve --port 0 …args` as a child process with a minimal environment (PATH and HOME,
 * plus `env`), once it says where it listens; rejects with its stderr if it exits first or
 * does not listen within 30 s.
 */
export async function spawnServe(args: string[], env: Record<string, string | undefined> = {}): Promise<ServeChild> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => {
    buf = (buf + d.toString()).slice(-65536);
  });
  const stderr = (): string => buf;
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`baton serve did not start: ${stderr()}`)), 30_000);
    child.stderr!.on('data', () => {
      const m = /listening on (https?:\/\/127\.0\.0\.1:\d+)/.exec(stderr());
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`baton serve exited (${code ?? signal}): ${stderr()}`));
    });
  });
  return { child, url, stderr, exit };
}

/**
 * Environment variables set for the duration of a test: `set` remembers each variable's first
 * value, `restore` (call it in afterEach) puts every one back (undefined: deleted).
 */
export function envScope(): { set(vars: Record<string, string | undefined>): void; restore(): void } {
  const saved = new Map<string, string | undefined>();
  return {
    set(vars) {
      for (const [k, v] of Object.entries(vars)) {
        if (!saved.has(k)) saved.set(k, process.env[k]);
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    },
    restore() {
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      saved.clear();
    },
  };
}

let auditSeq = 0;

/** An audit row of a successful internal read (its request id unique in this process), with `over` applied. */
export function auditEntry(over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    at: Date.now(),
    requestId: `req_t${auditSeq++}`,
    projectId: null,
    principal: null,
    role: null,
    op: 'plan_get',
    target: null,
    outcome: 'ok',
    code: null,
    params: null,
    transport: 'internal',
    address: null,
    ...over,
  };
}

/** Root, and `mount -t tmpfs` works here (the full-disk and read-only-mount cases need both). */
export function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = tempDir('baton-mount-probe-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe.dir], { stdio: 'ignore' });
    execFileSync('umount', [probe.dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    probe.cleanup();
  }
}
