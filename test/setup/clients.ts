import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A real agent client from the npm registry, installed once into
 * os.tmpdir()/baton-clients-<name>-<version> and reused by later runs. Installed into a fresh
 * directory first and renamed into place, so a run that dies mid-install never leaves a cache
 * that looks complete. Returns the path of its bin, or `{ unreachable }` with npm's reason when
 * the registry cannot be reached (the caller skips loudly); any other failure throws.
 */
export async function installClient(pkg: string, version: string, bin: string): Promise<{ bin: string } | { unreachable: string }> {
  const name = pkg.replace(/^@/, '').replace(/\//g, '-');
  const dir = join(tmpdir(), `baton-clients-${name}-${version}`);
  const binPath = join(dir, 'node_modules', '.bin', bin);
  if (existsSync(binPath)) return { bin: binPath };
  mkdirSync(tmpdir(), { recursive: true });
  const staging = mkdtempSync(join(tmpdir(), `baton-clients-${name}-staging-`));
  try {
    await run('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', staging, `${pkg}@${version}`], {
      timeout: 600_000,
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    if ((err as { killed?: boolean }).killed === true) return { unreachable: 'npm install did not finish within 10 minutes' };
    const text = String((err as { stderr?: string }).stderr ?? err);
    if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|ENETUNREACH|network|socket hang up/i.test(text)) {
      return { unreachable: text.split('\n').find((l) => /ENOTFOUND|EAI_AGAIN|ECONN|ETIMEDOUT|ENETUNREACH|network/i.test(l)) ?? 'network error' };
    }
    throw err;
  }
  try {
    renameSync(staging, dir);
  } catch {
    rmSync(staging, { recursive: true, force: true }); // another run installed it first
  }
  return { bin: binPath };
}

/** Says, where nobody can miss it, that a real-client test did not run. */
export function loudSkip(client: string, why: string): string {
  const line = '!'.repeat(78);
  const msg = `${line}\n!! SKIPPED: the ${client} acceptance test did not run: the npm registry is unreachable (${why}).\n${line}`;
  process.stderr.write(`\n${msg}\n`);
  return msg;
}

interface RpcMessage {
  id?: number;
  method?: string;
  result?: unknown;
  error?: { message?: string };
  params?: unknown;
}

/** `codex app-server` (JSON-RPC 2.0, one JSON object per line on stdio). */
export function codexAppServer(bin: string, cwd: string, env: Record<string, string>): {
  request<T = unknown>(method: string, params: unknown): Promise<T>;
  notify(method: string): void;
  close(): Promise<void>;
  stderr(): string;
} {
  const child = spawn(bin, ['app-server'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString('utf8');
  });
  const waiting = new Map<number, { resolve: (m: RpcMessage) => void }>();
  createInterface({ input: child.stdout }).on('line', (line) => {
    let m: RpcMessage;
    try {
      m = JSON.parse(line) as RpcMessage;
    } catch {
      return;
    }
    if (m.id !== undefined && m.method === undefined) {
      waiting.get(m.id)?.resolve(m);
      waiting.delete(m.id);
    }
  });
  let next = 0;
  return {
    request<T>(method: string, params: unknown): Promise<T> {
      const id = ++next;
      return new Promise<T>((resolve, reject) => {
        waiting.set(id, {
          resolve: (m) => (m.error !== undefined ? reject(new Error(`${method}: ${m.error.message ?? 'error'}`)) : resolve(m.result as T)),
        });
        child.stdin.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
      });
    },
    notify(method: string) {
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method }) + '\n');
    },
    /** Ends the server and waits until it has exited: it writes into its home while shutting down, and the test removes that home next. */
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const forced = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(forced);
    },
    stderr: () => err,
  };
}
