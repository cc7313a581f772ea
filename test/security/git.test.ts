import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, httpAgent, openHub, serve, type Agent, type TestHub, envScope } from '../helpers.js';

/**
 * Item 9 of the second security round: a checkpoint commit must run no program a repository
 * configures, must not follow a symlink out of the allowlist, and must not hold the store while
 * git runs. Every case goes through MCP over HTTP against a running hub.
 */

function gitIn(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' });
}

const temp: string[] = [];
function dir(prefix: string): string {
  const d = realpathSync(mkdtempSync(join(tmpdir(), prefix)));
  temp.push(d);
  return d;
}

function initRepo(at: string): string {
  mkdirSync(at, { recursive: true });
  gitIn(at, 'init', '-q');
  gitIn(at, 'config', 'user.name', 'Ada Lovelace');
  gitIn(at, 'config', 'user.email', 'ada@example.test');
  gitIn(at, 'config', 'commit.gpgsign', 'false');
  return at;
}

/** A script that records that it ran (the attack's payload). */
function payload(marker: string): string {
  const script = join(dir('baton-payload-'), 'run.sh');
  writeFileSync(script, `#!/bin/sh\ntouch '${marker}'\ncat\n`);
  chmodSync(script, 0o755);
  return script;
}

const env = envScope();
const setEnv = (name: string, value: string): void => env.set({ [name]: value });
afterEach(() => env.restore());

const errorCode = (r: { isError: boolean; data: Record<string, unknown> }): unknown =>
  r.isError ? (r.data.error as { code?: string } | undefined)?.code : 'ok';

describe('checkpoint commits (item 9)', () => {
  let t: TestHub;
  let http: HttpHandle;
  let allowed: string;
  const agents: Agent[] = [];
  beforeAll(async () => {
    // The allowed root is also the project directory (the one holding the data dir).
    allowed = dir('baton-allowed-');
    t = await openHub({ dir: allowed, config: { gitRepos: [allowed] } });
    http = await serve(t.hub);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await http.close();
    await t.close();
    for (const d of temp) rmSync(d, { recursive: true, force: true });
  });
  const worker = async (name: string, project?: string): Promise<Agent> => {
    const a = await httpAgent('v2', http.url, await createKey(t, name, 'worker', project));
    agents.push(a);
    await a.ok('session_start', { goal: 'commit' });
    return a;
  };

  it("a nested repository's core.fsmonitor or filter driver never runs; the repository is refused", async () => {
    const w = await worker('git-fsmonitor');
    const marker = join(dir('baton-mark-'), 'ran');
    const script = payload(marker);

    const nested = initRepo(join(allowed, 'outer', 'nested'));
    gitIn(nested, 'config', 'core.fsmonitor', script);
    writeFileSync(join(nested, 'a.txt'), 'one');
    const r1 = await w.call('session_checkpoint', { summary: 's', commit: { repo: nested, message: 'm', paths: ['a.txt'] } });
    expect(errorCode(r1)).toBe('forbidden');

    // The filter named by a .gitattributes line, defined in an included config file.
    const filtered = initRepo(join(allowed, 'filtered'));
    const inc = join(filtered, 'extra.cfg');
    writeFileSync(inc, `[filter "x"]\n\tclean = ${script}\n\tsmudge = ${script}\n`);
    gitIn(filtered, 'config', 'include.path', inc);
    writeFileSync(join(filtered, '.gitattributes'), '* filter=x\n');
    writeFileSync(join(filtered, 'a.txt'), 'one');
    const r2 = await w.call('session_checkpoint', { summary: 's', commit: { repo: filtered, message: 'm', paths: ['a.txt'] } });
    expect(errorCode(r2)).toBe('forbidden');

    expect(existsSync(marker)).toBe(false);
    expect(() => gitIn(nested, 'rev-parse', '--verify', '-q', 'HEAD')).toThrow();
    expect(() => gitIn(filtered, 'rev-parse', '--verify', '-q', 'HEAD')).toThrow();
  });

  it('program-running keys in config the repository does not own are pinned off on the command line', async () => {
    // The operator's global config is trusted (it carries the identity), but a program it names
    // for fsmonitor or a hook path still does not run for an agent's commit.
    const w = await worker('git-pinned');
    const marker = join(dir('baton-mark-'), 'ran');
    const script = payload(marker);
    const hooks = dir('baton-hooks-');
    writeFileSync(join(hooks, 'pre-commit'), `#!/bin/sh\ntouch '${marker}'\n`);
    chmodSync(join(hooks, 'pre-commit'), 0o755);
    const global = join(dir('baton-global-'), 'gitconfig');
    writeFileSync(global, `[core]\n\tfsmonitor = ${script}\n\thooksPath = ${hooks}\n`);
    setEnv('GIT_CONFIG_GLOBAL', global);
    const repo = initRepo(join(allowed, 'pinned'));
    writeFileSync(join(repo, 'a.txt'), 'one');
    const out = await w.ok<{ checkpoint: { commit_sha: string | null } }>('session_checkpoint', {
      summary: 's',
      commit: { repo, message: 'm', paths: ['a.txt'] },
    });
    expect(out.checkpoint.commit_sha).toMatch(/^[0-9a-f]{40}$/);
    expect(existsSync(marker)).toBe(false);
  });

  it('a symlink or a .git file inside an allowed directory cannot lead a commit outside it', async () => {
    const w = await worker('git-symlink');
    const victim = initRepo(join(dir('baton-victim-'), 'repo'));
    writeFileSync(join(victim, 'a.txt'), 'one');
    gitIn(victim, 'add', 'a.txt');
    const link = join(allowed, 'link');
    symlinkSync(victim, link);
    const r1 = await w.call('session_checkpoint', { summary: 's', commit: { repo: link, message: 'escape' } });
    expect(errorCode(r1)).toBe('forbidden');

    // A path through a symlinked directory inside an allowed repository.
    const repo = initRepo(join(allowed, 'linked-paths'));
    const away = dir('baton-away-');
    writeFileSync(join(away, 'secret.txt'), 'outside');
    symlinkSync(away, join(repo, 'sub'));
    const r2 = await w.call('session_checkpoint', {
      summary: 's',
      commit: { repo, message: 'escape', paths: ['sub/secret.txt'] },
    });
    expect(errorCode(r2)).toBe('forbidden');
    // A `.git` file inside the allowed directory that points at the victim's git dir.
    const pointer = join(allowed, 'pointer');
    mkdirSync(pointer);
    writeFileSync(join(pointer, '.git'), `gitdir: ${join(victim, '.git')}\n`);
    writeFileSync(join(pointer, 'b.txt'), 'two');
    const r3 = await w.call('session_checkpoint', { summary: 's', commit: { repo: pointer, message: 'escape', paths: ['b.txt'] } });
    expect(errorCode(r3)).toBe('forbidden');
    expect(gitIn(victim, 'diff', '--cached', '--name-only').trim()).toBe('a.txt'); // its index untouched
    expect(() => gitIn(victim, 'rev-parse', '--verify', '-q', 'HEAD')).toThrow();
    expect(() => gitIn(repo, 'rev-parse', '--verify', '-q', 'HEAD')).toThrow();
    // The agent's session recorded nothing for the refused calls.
    expect(await w.ok<{ session: { checkpoints: number } }>('whoami')).toMatchObject({ session: { checkpoints: 0 } });
  });

  it("git runs outside the store's transaction: another project's reads and writes finish while it runs", async () => {
    const w = await worker('git-slow');
    const other = await worker('other-worker', 'other-project');
    const gate = dir('baton-gate-');
    const fifo = join(gate, 'fifo');
    const started = join(gate, 'started');
    execFileSync('mkfifo', [fifo]);
    const real = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
    const bin = dir('baton-fakegit-');
    // The commit step announces itself, then waits until the test opens the gate.
    writeFileSync(
      join(bin, 'git'),
      `#!/bin/sh\nfor a in "$@"; do if [ "$a" = commit ]; then touch '${started}'; read x < '${fifo}'; fi; done\nexec '${real}' "$@"\n`,
    );
    chmodSync(join(bin, 'git'), 0o755);
    setEnv('PATH', `${bin}:${process.env.PATH ?? ''}`);

    const repo = initRepo(join(allowed, 'slow'));
    writeFileSync(join(repo, 'a.txt'), 'one');
    const checkpoint = w.ok<{ checkpoint: { id: number; commit_sha: string | null } }>('session_checkpoint', {
      summary: 'slow commit',
      commit: { repo, message: 'slow', paths: ['a.txt'] },
    });
    let settled = false;
    void checkpoint.finally(() => {
      settled = true;
    });
    const deadline = Date.now() + 30_000;
    while (!existsSync(started) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(existsSync(started)).toBe(true);

    // git is blocked inside `commit`: the other project's calls complete regardless.
    await other.ok('task_create', { tasks: [{ title: 'written while git runs' }] });
    expect(await other.ok<{ session: { checkpoints: number } }>('whoami')).toMatchObject({ session: { checkpoints: 0 } });
    expect(settled).toBe(false); // the checkpoint still waits for git

    writeFileSync(fifo, 'go\n');
    const out = await checkpoint;
    expect(out.checkpoint).toMatchObject({ id: 1 });
    expect(out.checkpoint.commit_sha).toBe(gitIn(repo, 'rev-parse', 'HEAD').trim());
  });

  it("runs no hook, so the hub itself refuses staged paths another agent's lock covers (as `baton guard` would)", async () => {
    const holder = await worker('lock-holder');
    const w = await worker('lock-committer');
    await holder.ok('lock_acquire', { paths: ['src/**'], reason: 'refactoring' });
    const repo = initRepo(allowed); // the project directory itself
    mkdirSync(join(repo, 'src'), { recursive: true });
    writeFileSync(join(repo, 'src', 'a.ts'), 'one');
    writeFileSync(join(repo, 'notes.txt'), 'two');
    const refused = await w.call('session_checkpoint', { summary: 's', commit: { repo, message: 'm', paths: ['src/a.ts'] } });
    expect(errorCode(refused)).toBe('conflict');
    expect(JSON.stringify(refused.data)).toContain('lock-holder');
    expect(() => gitIn(repo, 'rev-parse', '--verify', '-q', 'HEAD')).toThrow();
    // It stays staged, so any commit would take it: still refused until it is unstaged.
    expect(errorCode(await w.call('session_checkpoint', { summary: 's', commit: { repo, message: 'm', paths: ['notes.txt'] } }))).toBe(
      'conflict',
    );
    gitIn(repo, 'rm', '-q', '--cached', 'src/a.ts');
    const ok = await w.ok<{ checkpoint: { commit_sha: string | null } }>('session_checkpoint', {
      summary: 's',
      commit: { repo, message: 'notes', paths: ['notes.txt'] },
    });
    expect(ok.checkpoint.commit_sha).toMatch(/^[0-9a-f]{40}$/);
    // The holder's own lock never refuses the holder.
    const own = await holder.ok<{ checkpoint: { commit_sha: string | null } }>('session_checkpoint', {
      summary: 's',
      commit: { repo, message: 'src', paths: ['src/a.ts'] },
    });
    expect(own.checkpoint.commit_sha).toMatch(/^[0-9a-f]{40}$/);
    expect(gitIn(repo, 'rev-list', '--count', 'HEAD').trim()).toBe('2');
  });

  it('checks a commit in a linked git worktree against the same lock paths (from the main worktree top)', async () => {
    const holder = await worker('wt-holder');
    const w = await worker('wt-committer');
    await holder.ok('lock_acquire', { paths: ['lib/**'], reason: 'worktree test' });
    const repo = initRepo(allowed);
    writeFileSync(join(repo, 'base.txt'), 'base');
    gitIn(repo, 'add', 'base.txt');
    gitIn(repo, 'commit', '-q', '-m', 'base');
    // A worktree inside the project directory (a common layout): its paths must not be read as
    // `.worktrees/feature/lib/…`, which no lock covers.
    const wt = join(repo, '.worktrees', 'feature');
    gitIn(repo, 'worktree', 'add', '-q', '-b', 'wt-feature', wt);
    mkdirSync(join(wt, 'lib'), { recursive: true });
    writeFileSync(join(wt, 'lib', 'x.ts'), 'x');
    const refused = await w.call('session_checkpoint', { summary: 's', commit: { repo: wt, message: 'm', paths: ['lib/x.ts'] } });
    expect(errorCode(refused)).toBe('conflict');
    expect(JSON.stringify(refused.data)).toContain('wt-holder');
    const own = await holder.ok<{ checkpoint: { commit_sha: string | null } }>('session_checkpoint', {
      summary: 's',
      commit: { repo: wt, message: 'holder', paths: ['lib/x.ts'] },
    });
    expect(own.checkpoint.commit_sha).toMatch(/^[0-9a-f]{40}$/);
  });
});
