import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listTools } from '../../src/api/mcp/tools.js';
import { BIN, createKey, openHub, runBaton, stdioAgent, tempDir } from '../helpers.js';

/**
 * bin/baton.js runs the esbuild bundle (dist/bundle/baton.cjs, `npm run build`), not tsc's per-file dist/
 * (issue 11: cold start). What the bundle changes, checked through the real process:
 * - tools/list comes from input schemas computed at build time and inlined into the bundle: it
 *   must equal what the sources compute now, for every op (a stale or wrong prebuilt schema fails);
 * - code that finds files beside itself still finds them from inside the bundle: the version
 *   (package.json), the dashboard (dist/web) and the deferred audit worker (dist/ops);
 * - the bundle is ASCII (bin/baton.js reads it as latin1);
 * - the compiled-code cache goes to a per-user directory (XDG_CACHE_HOME), never tmp, one entry
 *   per command, and a second start uses it.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('the bundled CLI (bin/baton.js → dist/bundle/baton.cjs)', () => {
  it('is what bin/baton.js runs', () => {
    expect(existsSync(join(ROOT, 'dist/bundle/baton.cjs'))).toBe(true);
    expect(readFileSync(BIN, 'utf8')).toContain('../dist/bundle/baton.cjs');
    // The bundled dependencies' licenses ship beside it.
    const licenses = readFileSync(join(ROOT, 'dist/bundle/THIRD-PARTY-LICENSES.txt'), 'utf8');
    for (const dep of ['zod@', '@modelcontextprotocol/server@', 'commander@', 'pino@']) expect(licenses).toContain(dep);
    // bin/baton.js reads it as latin1 (a copy; UTF-8 decoding cost the start ~5 ms): any
    // non-ASCII byte would turn into other characters (scripts/bundle.mjs escapes them).
    const bytes = readFileSync(join(ROOT, 'dist/bundle/baton.cjs'));
    expect(bytes.findIndex((b) => b > 0x7f)).toBe(-1);
  });

  it('answers tools/list over stdio with exactly the schemas the sources compute, for every op', async () => {
    const t = await openHub();
    try {
      const key = await createKey(t, 'adm', 'admin');
      const dataDir = join(t.dir, 'data');
      const agent = await stdioAgent('v2', dataDir, { BATON_TOKEN: key, BATON_TOOLS: 'all' });
      try {
        const listed = await agent.tools();
        const expected = listTools(t.hub, { ...t.admin, role: 'admin' }, 'all');
        expect(listed.length).toBe(expected.length);
        expect(listed.length).toBeGreaterThan(40);
        for (const tool of expected) {
          const got = listed.find((x) => x.name === tool.name);
          expect(got?.inputSchema, tool.name).toEqual(tool.inputSchema);
          expect(got?.description, tool.name).toBe(tool.description);
        }
      } finally {
        await agent.close();
      }
    } finally {
      await t.close();
    }
  }, 60_000);

  it('finds package.json, the dashboard and the audit worker from inside the bundle', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect((await runBaton(['--version'])).stdout.trim()).toBe(pkg.version);

    const tmp = tempDir('baton-bundle-');
    try {
      const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data', join(tmp.dir, 'data')], {
        env: { PATH: process.env.PATH, HOME: process.env.HOME, BATON_RATE_LIMIT: 'false' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      children.push(child);
      const url = await new Promise<string>((res, rej) => {
        let buf = '';
        const timer = setTimeout(() => rej(new Error(`serve did not start: ${buf}`)), 20_000);
        child.stderr!.on('data', (d: Buffer) => {
          buf += d.toString();
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
          if (m) {
            clearTimeout(timer);
            res(m[1]!);
          }
        });
        child.once('exit', () => rej(new Error(buf)));
      });
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<script');
      // The audit writer is a worker thread loaded from a file next to its module.
      let worker: { ok?: boolean; status?: string } | undefined;
      for (let i = 0; i < 100; i++) {
        const r = (await (await fetch(`${url}/readyz`)).json()) as { checks?: { audit_writer?: { ok?: boolean; status?: string } } };
        worker = r.checks?.audit_writer;
        if (worker?.ok === true) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(worker?.ok, JSON.stringify(worker)).toBe(true);
      child.kill('SIGTERM');
    } finally {
      tmp.cleanup();
    }
  }, 60_000);

  it('keeps its compiled-code cache in the user\'s cache directory, per command, and uses it', async () => {
    const tmp = tempDir('baton-cc-');
    try {
      const cache = join(tmp.dir, 'xdg');
      const dir = join(cache, 'baton', 'compile-cache');
      const first = await runBaton(['--version'], { env: { XDG_CACHE_HOME: cache } });
      expect(first.code).toBe(0);
      const entries = readdirSync(dir);
      expect(entries).toHaveLength(1);
      expect(entries[0]).toMatch(/^baton-v[\d.]+-.*-other\.v8$/);
      expect(statSync(join(dir, entries[0]!)).mode & 0o077).toBe(0);
      // A second start reads the entry (a rejected one would be rewritten: its mtime would move).
      const before = statSync(join(dir, entries[0]!)).mtimeMs;
      expect((await runBaton(['--version'], { env: { XDG_CACHE_HOME: cache } })).stdout).toBe(first.stdout);
      expect(statSync(join(dir, entries[0]!)).mtimeMs).toBe(before);
      // A damaged entry is rejected by V8 and replaced; the start is not affected.
      writeFileSync(join(dir, entries[0]!), 'not V8 code');
      expect((await runBaton(['--version'], { env: { XDG_CACHE_HOME: cache } })).stdout).toBe(first.stdout);
      expect(readFileSync(join(dir, entries[0]!), 'utf8')).not.toBe('not V8 code');
      // An entry others may write is not used (it is replaced by one only this user can write).
      chmodSync(join(dir, entries[0]!), 0o666);
      expect((await runBaton(['--version'], { env: { XDG_CACHE_HOME: cache } })).stdout).toBe(first.stdout);
      expect(statSync(join(dir, entries[0]!)).mode & 0o077).toBe(0);
      // Another command gets its own entry, and writing it removes entries unused for a week
      // (other builds, other Node versions); NODE_DISABLE_COMPILE_CACHE writes none.
      const stale = join(dir, 'baton-v0.0.0-x64-1-1-1-mcp.v8');
      const recent = join(dir, 'baton-v0.0.1-x64-1-1-1-mcp.v8');
      writeFileSync(stale, 'old', { mode: 0o600 });
      writeFileSync(recent, 'new', { mode: 0o600 });
      utimesSync(stale, new Date(Date.now() - 8 * 86_400_000), new Date(Date.now() - 8 * 86_400_000));
      await runBaton(['help'], { env: { XDG_CACHE_HOME: cache } });
      expect(existsSync(stale)).toBe(false);
      expect(existsSync(recent)).toBe(true);
      expect(readdirSync(dir)).toHaveLength(3);
      const off = join(tmp.dir, 'off');
      await runBaton(['--version'], { env: { XDG_CACHE_HOME: off, NODE_DISABLE_COMPILE_CACHE: '1' } });
      expect(existsSync(off)).toBe(false);
      // With source maps asked for, Node's own loader runs the bundle (it maps only what it loaded).
      const maps = join(tmp.dir, 'maps');
      const mapped = await runBaton(['--version'], { env: { XDG_CACHE_HOME: maps, NODE_OPTIONS: '--enable-source-maps' } });
      expect(mapped.stdout).toBe(first.stdout);
      expect(existsSync(maps)).toBe(false);
    } finally {
      tmp.cleanup();
    }
  }, 30_000);
});
