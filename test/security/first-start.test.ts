import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, tempDir } from '../helpers.js';

const run = promisify(execFile);
const KEY = /bat_[A-Za-z0-9_-]{20,}/;

async function baton(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    // execFile's pipes: stdout and stderr are not a TTY, as under a service manager or CI.
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp' },
      timeout: 20_000,
      encoding: 'utf8',
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('the first-start admin key off a terminal (item 10)', () => {
  it('goes to a 0600 file in the data dir; stderr says where, never the key', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    const first = await baton(['init', '--data', data]);
    expect(first.code).toBe(0);
    expect(first.stderr).not.toMatch(KEY);
    expect(first.stdout).not.toMatch(KEY);
    const file = join(data, 'admin-key.txt');
    expect(first.stderr).toContain(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const key = readFileSync(file, 'utf8').trim();
    expect(key).toMatch(KEY);
    // The key in the file is the server-admin key: it authenticates (prefix matches the stored token).
    const listed = await baton(['token', 'list', '--json', '--data', data]);
    const { tokens } = JSON.parse(listed.stdout) as { tokens: { prefix: string; server_admin: boolean }[] };
    expect(tokens.some((t) => t.server_admin && key.startsWith(t.prefix))).toBe(true);
    // Later starts neither print nor rewrite it.
    writeFileSync(file, 'stored elsewhere\n');
    const again = await baton(['agent', 'whoami', '--data', data]);
    expect(again.stderr).not.toMatch(KEY);
    expect(readFileSync(file, 'utf8')).toBe('stored elsewhere\n');
  });

  it('is never written through a planted file or symlink; then the key is lost, not printed', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    mkdirSync(data, { mode: 0o700 });
    const elsewhere = join(tmp.dir, 'readable-by-all.txt');
    symlinkSync(elsewhere, join(data, 'admin-key.txt'));
    const first = await baton(['init', '--data', data]);
    expect(first.code).toBe(0);
    expect(first.stderr).not.toMatch(KEY);
    expect(first.stderr).toMatch(/could not write it.*EEXIST.*token create/);
    expect(existsSync(elsewhere)).toBe(false);
    rmSync(join(data, 'admin-key.txt'));
  });
});
