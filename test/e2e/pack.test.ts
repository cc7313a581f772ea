import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

/**
 * The package as npm publishes it: `npm pack`, installed into a temp prefix, run from another
 * directory, driven by the official SDK client over stdio. A file missing from `files` in
 * package.json (or a runtime import of a devDependency) fails here, not on a user's machine.
 *
 * The install uses `--prefer-offline` (the npm cache first; the registry only for what it lacks:
 * ~2 s here with a warm cache) and `--ignore-scripts`: better-sqlite3's install script would
 * compile it (~4 min where its prebuilt host is unreachable), so the test puts this checkout's
 * already-built binary of the same pinned version where prebuild-install would. With the
 * `node:sqlite` driver (Node ≥ 22.13) the store needs no native module at all. When the registry
 * is unreachable and the cache lacks a dependency, the test is skipped with a loud message.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';

let tmp: { dir: string; cleanup: () => void };
let bin = '';
let skipped: string | null = null;

beforeAll(async () => {
  tmp = tempDir('baton-pack-');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  expect(pkg.name).toBe('baton-hub');
  // `npm test` builds first; packing must not rebuild (prepare) under a parallel test run.
  if (!existsSync(join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  await run(NPM, ['pack', '--ignore-scripts', '--pack-destination', tmp.dir], { cwd: ROOT, timeout: 60_000 });
  const tarball = readdirSync(tmp.dir).find((f) => f.startsWith('baton-hub-') && f.endsWith('.tgz'));
  if (tarball === undefined) throw new Error('npm pack wrote no baton-hub-*.tgz');
  const prefix = join(tmp.dir, 'prefix');
  try {
    await run(NPM, ['install', '--prefix', prefix, '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', join(tmp.dir, tarball)], {
      cwd: tmp.dir,
      timeout: 120_000,
    });
  } catch (err) {
    const text = String((err as { stderr?: string }).stderr ?? err);
    if (/ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i.test(text)) {
      skipped = `SKIPPED: the npm registry is unreachable and the cache lacks a dependency (${text.split('\n')[0]})`;
      process.stderr.write(`\n*** pack.test.ts ${skipped} ***\n\n`);
      return;
    }
    throw err;
  }
  // The native binary, as prebuild-install would have fetched it (same pinned version, same Node).
  const require = createRequire(join(ROOT, 'package.json'));
  let built: string | null = null;
  try {
    built = join(dirname(require.resolve('better-sqlite3/package.json')), 'build/Release/better_sqlite3.node');
  } catch {
    built = null; // not installed here (the node:sqlite driver needs none)
  }
  const target = join(prefix, 'node_modules/better-sqlite3');
  if (built !== null && existsSync(built) && existsSync(target)) {
    mkdirSync(join(target, 'build/Release'), { recursive: true });
    copyFileSync(built, join(target, 'build/Release/better_sqlite3.node'));
  }
  bin = join(prefix, 'node_modules/.bin/baton');
}, 180_000);

afterAll(() => tmp?.cleanup());

describe('the published package (npm pack → install → baton mcp)', () => {
  it('ships bin and dist, not the sources or the tests', async (ctx) => {
    if (skipped !== null) return ctx.skip(skipped);
    const installed = join(tmp.dir, 'prefix/node_modules/baton-hub');
    expect(existsSync(join(installed, 'bin/baton.js'))).toBe(true);
    expect(existsSync(join(installed, 'dist/cli/main.js'))).toBe(true);
    expect(existsSync(join(installed, 'src'))).toBe(false);
    expect(existsSync(join(installed, 'test'))).toBe(false);
  });

  it('its `baton` bin answers tools/list and whoami over stdio from another directory', async (ctx) => {
    if (skipped !== null) return ctx.skip(skipped);
    const data = join(tmp.dir, 'data');
    const cwd = join(tmp.dir, 'elsewhere');
    mkdirSync(cwd);
    const transport = new StdioClientTransport({
      command: bin,
      args: ['mcp', '--data', data],
      cwd,
      env: { ...getDefaultEnvironment(), BATON_AGENT: 'packed', BATON_LOG_LEVEL: 'warn' },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'pack-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain('task_claim');
      const r = (await client.callTool({ name: 'whoami', arguments: {} })) as { isError?: boolean; structuredContent?: { agent?: { name?: string } } };
      expect(r.isError).not.toBe(true);
      expect(r.structuredContent?.agent?.name).toBe('packed');
    } finally {
      await client.close();
    }
  });

  it('`npx baton-hub` and `npx -p baton-hub baton` resolve to its bin (the names the README gives)', async (ctx) => {
    if (skipped !== null) return ctx.skip(skipped);
    const cwd = join(tmp.dir, 'prefix');
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const direct = await run(NPX, ['--offline', 'baton-hub', '--version'], { cwd, timeout: 60_000 });
    expect(direct.stdout.trim()).toBe(version);
    const named = await run(NPX, ['--offline', '-p', 'baton-hub', 'baton', '--version'], { cwd, timeout: 60_000 });
    expect(named.stdout.trim()).toBe(version);
  });

  it('its `baton serve` starts from another directory and answers /healthz', async (ctx) => {
    if (skipped !== null) return ctx.skip(skipped);
    const cwd = join(tmp.dir, 'elsewhere');
    mkdirSync(cwd, { recursive: true });
    const child = spawn(bin, ['serve', '--port', '0', '--data', join(tmp.dir, 'served')], {
      cwd,
      env: { ...process.env, BATON_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        child.stderr.on('data', (c: Buffer) => {
          err += c.toString('utf8');
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
          if (m !== null) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`baton serve exited (${code}): ${err}`)));
      });
      const res = await fetch(`${url}/healthz`);
      expect(res.status).toBe(200);
    } finally {
      const exited = child.exitCode === null ? once(child, 'exit') : Promise.resolve();
      child.kill('SIGTERM');
      await exited;
    }
  });
});
