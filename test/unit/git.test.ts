import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isBatonError } from '../../src/core/errors.js';
import { commitForAgent, resolveRepo } from '../../src/os/git.js';
import { findSecret, scanFields } from '../../src/core/secrets-scan.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function gitIn(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' });
}

/** A temp repo with its own local identity (which must win over any global one). */
function repo(): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-git-'));
  dirs.push(dir);
  gitIn(dir, 'init', '-q');
  gitIn(dir, 'config', 'user.name', 'Ada Lovelace');
  gitIn(dir, 'config', 'user.email', 'ada@example.test');
  gitIn(dir, 'config', 'commit.gpgsign', 'false');
  return dir;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isBatonError(err)) return err.code;
    throw err;
  }
  return 'ok';
}

describe('commitForAgent', () => {
  it('refuses a directory that is not a git work tree, a missing one, and a relative path', async () => {
    const plain = mkdtempSync(join(tmpdir(), 'baton-nogit-'));
    dirs.push(plain);
    expect(await codeOf(commitForAgent({ repo: plain, message: 'x' }))).toBe('invalid_input');
    expect(await codeOf(commitForAgent({ repo: join(plain, 'missing'), message: 'x' }))).toBe('invalid_input');
    expect(await codeOf(commitForAgent({ repo: 'relative/dir', message: 'x' }))).toBe('invalid_input');
    expect(await codeOf(commitForAgent({ repo: '--git-dir=/tmp', message: 'x' }))).toBe('invalid_input');
    // Inside .git is not a work tree either.
    const r = repo();
    expect(await codeOf(commitForAgent({ repo: join(r, '.git'), message: 'x' }))).toBe('invalid_input');
  });

  it("'.' means the base directory", () => {
    expect(resolveRepo('.', '/srv/project')).toBe('/srv/project');
    expect(resolveRepo('/a/b/../c')).toBe('/a/c');
  });

  it('nothing staged: no commit, sha null, no error', async () => {
    const r = repo();
    writeFileSync(join(r, 'untracked.txt'), 'not staged');
    expect(await commitForAgent({ repo: r, message: 'empty' })).toBeNull();
    expect(() => gitIn(r, 'rev-parse', '--verify', '-q', 'HEAD')).toThrow();
  });

  it("commits staged paths with the repo's configured identity, and returns HEAD", async () => {
    const r = repo();
    writeFileSync(join(r, 'a.txt'), 'one');
    const sha = await commitForAgent({ repo: r, message: 'add a', paths: ['a.txt'] });
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
    expect(gitIn(r, 'rev-parse', 'HEAD').trim()).toBe(sha);
    expect(gitIn(r, 'log', '-1', '--format=%an <%ae>|%cn <%ce>').trim()).toBe(
      'Ada Lovelace <ada@example.test>|Ada Lovelace <ada@example.test>',
    );
    // Only what was staged: a second call with nothing new staged makes no commit.
    writeFileSync(join(r, 'b.txt'), 'two');
    expect(await commitForAgent({ repo: r, message: 'again' })).toBeNull();
    expect(gitIn(r, 'rev-list', '--count', 'HEAD').trim()).toBe('1');
  });

  it('passes the message verbatim as one argument: shell metacharacters are not interpreted', async () => {
    const r = repo();
    const marker = join(r, 'pwned');
    const message = `"; rm -rf / # $(whoami) \`id\` && touch ${marker} | cat > ${marker} ; echo '$HOME'`;
    writeFileSync(join(r, 'a.txt'), 'one');
    const sha = await commitForAgent({ repo: r, message, paths: ['a.txt'] });
    expect(sha).not.toBeNull();
    expect(gitIn(r, 'log', '-1', '--format=%B').replace(/\n+$/, '')).toBe(message);
    expect(existsSync(marker)).toBe(false);
    // A message that looks like an option is still the message.
    writeFileSync(join(r, 'b.txt'), 'two');
    await commitForAgent({ repo: r, message: '--amend', paths: ['b.txt'] });
    expect(gitIn(r, 'log', '-1', '--format=%s').trim()).toBe('--amend');
    expect(gitIn(r, 'rev-list', '--count', 'HEAD').trim()).toBe('2');
  });

  it('paths are literal and after `--`: neither options nor pathspec magic', async () => {
    const r = repo();
    for (const f of ['a.txt', '*.txt', '--all', ':(top)x']) writeFileSync(join(r, f), f);
    const sha = await commitForAgent({ repo: r, message: 'odd names', paths: ['*.txt', '--all'] });
    expect(sha).not.toBeNull();
    const files = gitIn(r, 'show', '--name-only', '--format=', 'HEAD').trim().split('\n').sort();
    expect(files).toEqual(['*.txt', '--all']);
    expect(gitIn(r, 'status', '--porcelain', '--', 'a.txt').trim()).toBe('?? a.txt');
    expect(await codeOf(commitForAgent({ repo: r, message: 'missing', paths: ['no/such/file'] }))).toBe('invalid_input');
  });

  it('no hook runs: a refusing pre-commit hook and a post-commit hook that writes a marker are both skipped', async () => {
    const r = repo();
    const marker = join(r, 'hooked');
    for (const [name, body] of [
      ['pre-commit', '#!/bin/sh\nexit 1\n'],
      ['post-commit', `#!/bin/sh\ntouch '${marker}'\n`],
    ] as const) {
      const hook = join(r, '.git', 'hooks', name);
      writeFileSync(hook, body);
      chmodSync(hook, 0o755);
    }
    writeFileSync(join(r, 'a.txt'), 'one');
    expect(await commitForAgent({ repo: r, message: 'not refused', paths: ['a.txt'] })).toMatch(/^[0-9a-f]{40}$/);
    expect(existsSync(marker)).toBe(false);
  });

  it('one timeout bounds the whole commit: a git that hangs is cut off', async () => {
    const r = repo();
    const bin = mkdtempSync(join(tmpdir(), 'baton-fakegit-'));
    dirs.push(bin);
    const real = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
    writeFileSync(join(bin, 'git'), `#!/bin/sh\nfor a in "$@"; do [ "$a" = commit ] && sleep 5; done\nexec '${real}' "$@"\n`);
    chmodSync(join(bin, 'git'), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ''}`;
    try {
      writeFileSync(join(r, 'a.txt'), 'one');
      expect(await codeOf(commitForAgent({ repo: r, message: 'slow', paths: ['a.txt'], timeoutMs: 1_000 }))).toBe('unavailable');
    } finally {
      process.env.PATH = path;
    }
  });
});

describe('secret scan (S34)', () => {
  const secrets: [string, string][] = [
    ['baton api key', `key bat_${'A'.repeat(20)}-_${'b'.repeat(21)} here`],
    ['aws access key id', 'AKIAIOSFODNN7EXAMPLE'],
    ['private key', '-----BEGIN OPENSSH PRIVATE KEY-----\nabc'],
    ['private key', '-----BEGIN PRIVATE KEY-----'],
    ['github token', `ghp_${'x'.repeat(36)}`],
    ['api secret key', `export OPENAI=sk-${'a1'.repeat(12)}`],
    ['api secret key', `sk-proj-${'Z'.repeat(30)}`],
  ];
  for (const [kind, text] of secrets) {
    it(`finds a ${kind}`, () => expect(findSecret(text)).toBe(kind));
  }

  it('lets ordinary text through', () => {
    for (const text of [
      'Refactored the task-management-module-for-everyone and bat_short',
      'AKIA is a prefix; risk-assessment-of-the-new-parser done',
      'BEGIN PUBLIC KEY is fine',
      'ghp_tooshort',
    ]) {
      expect(findSecret(text)).toBeNull();
    }
  });

  it('names the field (and array index), never the value', () => {
    expect(scanFields({ summary: 'fine', completed: ['ok', 'AKIAIOSFODNN7EXAMPLE'] })).toEqual({
      field: 'completed.1',
      kind: 'aws access key id',
    });
    expect(scanFields({ summary: 'fine', other: undefined })).toBeNull();
  });
});
