import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { lockNamespace } from '../../src/cli/guard.js';
import { BIN, tempDir } from '../helpers.js';

/**
 * Agents in different git worktrees of one repository share one hub (the data dir beside the
 * common git dir) and one lock namespace (paths relative to each worktree's top); `baton guard`
 * installs pre-commit and pre-push hooks shared by every worktree, counts both paths of a
 * rename, and has a warn mode. Real git, real worktrees, the real CLI. Needs `npm run build`.
 */
const run = promisify(execFile);
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Repo {
  root: string;
  main: string;
  wt: string;
  remote: string;
  exec(cwd: string, cmd: string, args: string[], extra?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
  baton(cwd: string, args: string[], extra?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
  git(cwd: string, args: string[], extra?: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function repo(): Promise<Repo> {
  const t = tempDir('baton-worktrees-');
  cleanups.push(t.cleanup);
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: t.dir,
    GIT_CONFIG_NOSYSTEM: '1',
    BATON_LOG_LEVEL: 'warn',
    ...extra,
  });
  const exec: Repo['exec'] = async (cwd, cmd, args, extra = {}) => {
    try {
      const { stdout, stderr } = await run(cmd, args, { cwd, env: env(extra), encoding: 'utf8', timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof e.code !== 'number') throw err;
      return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  };
  const r: Repo = {
    root: t.dir,
    main: join(t.dir, 'main'),
    wt: join(t.dir, 'elsewhere', 'feature'),
    remote: join(t.dir, 'remote.git'),
    exec,
    baton: (cwd, args, extra) => exec(cwd, process.execPath, [BIN, ...args], extra),
    git: (cwd, args, extra) => exec(cwd, 'git', args, extra),
  };
  mkdirSync(join(r.main, 'src'), { recursive: true });
  const ok = async (p: Promise<{ code: number; stderr: string }>): Promise<void> => {
    const x = await p;
    expect(x.code, x.stderr).toBe(0);
  };
  await ok(r.git(t.dir, ['init', '-q', '--bare', r.remote]));
  await ok(r.git(r.main, ['init', '-q', '-b', 'main']));
  await ok(r.git(r.main, ['config', 'user.name', 'Worktree Test']));
  await ok(r.git(r.main, ['config', 'user.email', 'wt@example.invalid']));
  await ok(r.git(r.main, ['config', 'commit.gpgsign', 'false']));
  for (const f of ['a.ts', 'c.ts', 'free.ts']) writeFileSync(join(r.main, 'src', f), `// ${f}\n`);
  await ok(r.git(r.main, ['add', '.']));
  await ok(r.git(r.main, ['commit', '-q', '-m', 'initial']));
  await ok(r.git(r.main, ['remote', 'add', 'origin', r.remote]));
  await ok(r.git(r.main, ['push', '-q', 'origin', 'main']));
  mkdirSync(join(t.dir, 'elsewhere'));
  await ok(r.git(r.main, ['worktree', 'add', '-q', '-b', 'feature', r.wt]));
  await ok(r.baton(r.main, ['init']));
  return r;
}

describe('git worktrees', () => {
  it('share one data dir and one lock namespace, found from any worktree', async () => {
    const r = await repo();
    // From the linked worktree (not under main/), with no --data: the main worktree's .baton.
    const lock = await r.baton(r.main, ['lock', 'acquire', '--paths', 'src/a.ts', '--json', '--as', 'agent-a', '--as-role', 'worker']);
    expect(lock.code, lock.stderr).toBe(0);
    const fromWt = await r.baton(r.wt, ['lock', 'acquire', '--paths', 'src/a.ts', '--json', '--as', 'agent-b', '--as-role', 'worker']);
    expect(fromWt.code).toBe(1);
    expect(fromWt.stderr).toContain('conflict');
    const list = await r.baton(r.wt, ['lock', 'list', '--json']);
    expect((JSON.parse(list.stdout) as { locks: { agent: string; paths: string[] }[] }).locks).toEqual([expect.objectContaining({ agent: 'agent-a', paths: ['src/a.ts'] })]);
    // `baton setup` from the worktree writes the worktree's config against the shared hub.
    const setup = await r.baton(r.wt, ['setup', 'mcp-json', '--agent', 'agent-c']);
    expect(setup.code, setup.stderr).toBe(0);
    const mcp = JSON.parse(readFileSync(join(r.wt, '.mcp.json'), 'utf8')) as { mcpServers: { baton: { args: string[] } } };
    expect(mcp.mcpServers.baton.args.slice(-2)).toEqual(['--data', join(r.main, '.baton')]);
    expect(readFileSync(join(r.wt, '.gitignore'), 'utf8')).toContain('.baton/');
  });

  it('baton guard: hooks installed from a worktree guard every worktree; renames count both paths; pre-push; warn mode', async () => {
    const r = await repo();
    const hooks = join(r.main, '.git', 'hooks');
    const install = await r.baton(r.wt, ['guard', 'install']);
    expect(install.code, install.stderr).toBe(0);
    expect(install.stdout.trim().split('\n')).toEqual([join(hooks, 'pre-commit'), join(hooks, 'pre-push')]);
    expect(readFileSync(join(hooks, 'pre-push'), 'utf8')).toContain(`'${join(r.main, '.baton')}'`);
    expect((await r.baton(r.main, ['lock', 'acquire', '--paths', 'src/a.ts,src/new.ts', '--as', 'agent-a', '--as-role', 'worker'])).code).toBe(0);

    const B = { BATON_AGENT: 'agent-b' };
    // An edit in the other worktree of a path agent-a holds is refused.
    writeFileSync(join(r.wt, 'src', 'a.ts'), '// b edits\n');
    await r.git(r.wt, ['add', 'src/a.ts']);
    const edit = await r.git(r.wt, ['commit', '-m', 'b edits a'], B);
    expect(edit.code).not.toBe(0);
    expect(edit.stderr).toContain('src/a.ts — locked by agent-a');
    await r.git(r.wt, ['reset', '-q', '--hard']);

    // A rename out of a locked path (old path) and into one (new path) are both refused.
    await r.git(r.wt, ['mv', 'src/a.ts', 'src/renamed.ts']);
    const out = await r.git(r.wt, ['commit', '-m', 'rename out'], B);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('src/a.ts — locked by agent-a');
    await r.git(r.wt, ['reset', '-q', '--hard']);
    await r.git(r.wt, ['mv', 'src/c.ts', 'src/new.ts']);
    const into = await r.git(r.wt, ['commit', '-m', 'rename into'], B);
    expect(into.code).not.toBe(0);
    expect(into.stderr).toContain('src/new.ts — locked by agent-a');
    expect(into.stderr).not.toContain('src/c.ts —');
    await r.git(r.wt, ['reset', '-q', '--hard']);

    // pre-push: a commit made before the lock existed is refused at push time.
    writeFileSync(join(r.wt, 'src', 'free.ts'), '// b edits free\n');
    await r.git(r.wt, ['add', 'src/free.ts']);
    expect((await r.git(r.wt, ['commit', '-q', '-m', 'b edits free'], B)).code).toBe(0);
    expect((await r.baton(r.main, ['lock', 'acquire', '--paths', 'src/free.ts', '--as', 'agent-a', '--as-role', 'worker'])).code).toBe(0);
    const push = await r.git(r.wt, ['push', '-q', 'origin', 'feature'], B);
    expect(push.code).not.toBe(0);
    expect(push.stderr).toContain('src/free.ts — locked by agent-a');
    expect(push.stderr).toContain('push refused');
    expect((await r.git(r.remote, ['branch', '--list', 'feature'])).stdout.trim()).toBe('');
    // Warn mode: the same push goes through, saying what is locked.
    expect((await r.baton(r.wt, ['guard', 'install', '--warn'])).code).toBe(0);
    const warned = await r.git(r.wt, ['push', '-q', 'origin', 'feature'], B);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stderr).toContain('src/free.ts — locked by agent-a');
    expect(warned.stderr).toContain('warn mode, push allowed');
    expect((await r.git(r.remote, ['branch', '--list', 'feature'])).stdout.trim()).toContain('feature');
    // …and a commit too.
    writeFileSync(join(r.wt, 'src', 'a.ts'), '// warned\n');
    await r.git(r.wt, ['add', 'src/a.ts']);
    const commit = await r.git(r.wt, ['commit', '-q', '-m', 'warned'], B);
    expect(commit.code, commit.stderr).toBe(0);
    expect(commit.stderr).toContain('warn mode, commit allowed');
  });

  it('pre-push over a remote commit this clone has not fetched (a force push) still checks the pushed paths', async () => {
    const r = await repo();
    const B = { BATON_AGENT: 'agent-b' };
    expect((await r.baton(r.main, ['guard', 'install'])).code).toBe(0);
    // Someone else pushes to main from another clone: origin/main here is now behind the remote.
    const other = join(r.root, 'other');
    expect((await r.git(r.root, ['clone', '-q', '-b', 'main', r.remote, other])).code).toBe(0);
    for (const [k, v] of [['user.name', 'Other'], ['user.email', 'o@example.invalid'], ['commit.gpgsign', 'false']]) await r.git(other, ['config', k!, v!]);
    writeFileSync(join(other, 'README.md'), 'theirs\n');
    await r.git(other, ['add', 'README.md']);
    expect((await r.git(other, ['commit', '-q', '-m', 'theirs'])).code).toBe(0);
    const theirs = await r.git(other, ['push', '-q', 'origin', 'main']);
    expect(theirs.code, theirs.stderr).toBe(0);
    // Here: a commit touching a locked path, force-pushed over the commit this clone never saw.
    expect((await r.baton(r.main, ['lock', 'acquire', '--paths', 'src/c.ts', '--as', 'agent-a', '--as-role', 'worker'])).code).toBe(0);
    writeFileSync(join(r.main, 'src', 'c.ts'), '// b edits c\n');
    await r.git(r.main, ['add', 'src/c.ts']);
    expect((await r.git(r.main, ['commit', '-q', '--no-verify', '-m', 'b edits c'], B)).code).toBe(0);
    const push = await r.git(r.main, ['push', '-q', '--force', 'origin', 'main'], B);
    expect(push.code).not.toBe(0);
    // Refused for the lock, not because git could not compute what is pushed.
    expect(push.stderr).toContain('src/c.ts — locked by agent-a');
    expect(push.stderr).not.toContain('git log failed');
  });

  it('the holder pushes its own locked paths', async () => {
    const r = await repo();
    expect((await r.baton(r.wt, ['guard', 'install'])).code).toBe(0);
    expect((await r.baton(r.main, ['lock', 'acquire', '--paths', 'src/**', '--as', 'agent-a', '--as-role', 'worker'])).code).toBe(0);
    writeFileSync(join(r.wt, 'src', 'a.ts'), '// a edits\n');
    await r.git(r.wt, ['add', 'src/a.ts']);
    const A = { BATON_AGENT: 'agent-a' };
    expect((await r.git(r.wt, ['commit', '-q', '-m', 'a edits'], A)).code).toBe(0);
    const push = await r.git(r.wt, ['push', '-q', 'origin', 'feature'], A);
    expect(push.code, push.stderr).toBe(0);
  });

  it('a project in a subdirectory: git paths map to paths relative to the data dir parent', async () => {
    const r = await repo();
    const data = join(r.main, 'packages', 'app', '.baton');
    expect(await lockNamespace(r.wt, data, ['packages/app/src/x.ts', 'README.md', 'packages/appendix.ts'])).toEqual(['src/x.ts']);
    expect(await lockNamespace(r.wt, join(r.main, '.baton'), ['src/x.ts'])).toEqual(['src/x.ts']);
    expect(await lockNamespace(r.wt, join(r.root, 'outside', '.baton'), ['src/x.ts'])).toEqual(['src/x.ts']);
  });
});
