import { mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir, runBaton, type CliResult } from '../helpers.js';

const KEY = /bat_[A-Za-z0-9_-]{20,}/;

const baton = (args: string[]): Promise<CliResult> => runBaton(args);

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
