import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, runBaton, tempDir } from '../helpers.js';
import { readServer, replaceServer, serverTable } from '../../src/cli/setup/toml.js';

/**
 * `baton setup <client>` through the real CLI process: what it writes, where the key goes (never
 * into a project file), idempotence, merging into files that hold other entries, --dry-run,
 * --check. Needs `npm run build`.
 */
const KEY = /bat_[A-Za-z0-9_-]{43}/;
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function project(): Promise<{ dir: string; data: string; home: string; env: Record<string, string> }> {
  const t = tempDir('baton-setup-');
  cleanups.push(t.cleanup);
  const data = join(t.dir, '.baton');
  const init = await runBaton(['init', '--data', data], { cwd: t.dir });
  expect(init.code, init.stderr).toBe(0);
  mkdirSync(join(t.dir, 'codex-home'));
  mkdirSync(join(t.dir, 'home'));
  // Never the machine's own ~/.codex, ~/.claude.json or ~/.gemini.
  return { dir: t.dir, data, home: join(t.dir, 'home'), env: { CODEX_HOME: join(t.dir, 'codex-home'), HOME: join(t.dir, 'home') } };
}

const json = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
const snapshot = (paths: string[]): (string | null)[] => paths.map((p) => (existsSync(p) ? readFileSync(p, 'utf8') : null));

describe('baton setup claude-code', () => {
  it('writes .mcp.json, trust, hooks and .gitignore, keeps the key in a 0600 file, merges, and a second run changes nothing', async () => {
    const p = await project();
    // Files of the user's, with entries that must survive.
    writeFileSync(join(p.dir, '.mcp.json'), JSON.stringify({ mcpServers: { other: { command: 'other-server' } }, extra: 1 }));
    mkdirSync(join(p.dir, '.claude'));
    const otherHook = { matcher: 'startup', hooks: [{ type: 'command', command: 'echo hi' }] };
    writeFileSync(join(p.dir, '.claude', 'settings.json'), JSON.stringify({ model: 'x', hooks: { SessionStart: [otherHook] } }));
    writeFileSync(join(p.dir, '.gitignore'), 'node_modules/');

    const r = await runBaton(['setup', 'claude-code', '--agent', 'alice', '--capabilities', 'ts,docs', '--project-dir', p.dir], { cwd: p.dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(KEY);

    const mcp = json(join(p.dir, '.mcp.json')) as { mcpServers: Record<string, { type: string; command: string; args: string[]; env: Record<string, string> }>; extra: number };
    expect(mcp.extra).toBe(1);
    expect(mcp.mcpServers.other).toEqual({ command: 'other-server' });
    const baton = mcp.mcpServers.baton!;
    expect(baton.type).toBe('stdio');
    // Absolute: works without `baton` on PATH.
    expect(baton.command).toBe(process.execPath);
    expect(baton.args).toEqual([BIN, 'mcp', '--data', p.data]);
    const keyFile = join(p.data, 'agents', 'alice.env');
    expect(baton.env).toEqual({ BATON_TOKEN_FILE: keyFile });
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile, 'utf8')).toMatch(new RegExp(`^BATON_TOKEN=${KEY.source}$`, 'm'));

    const settings = json(join(p.dir, '.claude', 'settings.json')) as { model: string; hooks: Record<string, { hooks: { command: string }[] }[]> };
    expect(settings.model).toBe('x');
    expect(settings.hooks.SessionStart![0]).toEqual(otherHook);
    for (const event of ['SessionStart', 'PreCompact']) {
      const commands = settings.hooks[event]!.flatMap((g) => g.hooks.map((h) => h.command));
      expect(commands.some((c) => c.includes("'prime'") && c.includes(keyFile))).toBe(true);
    }
    expect(json(join(p.dir, '.claude', 'settings.local.json'))).toEqual({ enabledMcpjsonServers: ['baton'], env: { BATON_AGENT: 'alice' } });
    expect(readFileSync(join(p.dir, '.gitignore'), 'utf8')).toMatch(/^node_modules\/\n(#.*\n)?\.baton\/\n$/);
    // No key in any project file.
    for (const f of ['.mcp.json', '.claude/settings.json', '.claude/settings.local.json', '.gitignore']) {
      expect(readFileSync(join(p.dir, f), 'utf8')).not.toMatch(KEY);
    }

    // The agent exists with its role, kind and capabilities.
    const agents = await runBaton(['agent', 'list', '--json', '--data', p.data]);
    const alice = (JSON.parse(agents.stdout) as { agents: { name: string; role: string; kind: string; capabilities: string[] }[] }).agents.find((a) => a.name === 'alice');
    expect(alice).toMatchObject({ role: 'worker', kind: 'claude-code', capabilities: ['ts', 'docs'] });

    // Idempotent: same bytes everywhere, the same key, no second key minted.
    const files = ['.mcp.json', '.claude/settings.json', '.claude/settings.local.json', '.gitignore'].map((f) => join(p.dir, f)).concat(keyFile);
    const before = snapshot(files);
    const again = await runBaton(['setup', 'claude-code', '--agent', 'alice', '--capabilities', 'ts,docs', '--project-dir', p.dir], { cwd: p.dir });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('nothing changed');
    expect(snapshot(files)).toEqual(before);
    const tokens = JSON.parse((await runBaton(['token', 'list', '--json', '--data', p.data])).stdout) as { tokens: { name: string }[] };
    expect(tokens.tokens.filter((t) => t.name === 'alice')).toHaveLength(1);
    // Without --capabilities, the agent keeps the ones it has.
    expect((await runBaton(['setup', 'claude-code', '--agent', 'alice', '--project-dir', p.dir], { cwd: p.dir })).code).toBe(0);
    const after = JSON.parse((await runBaton(['agent', 'list', '--json', '--data', p.data])).stdout) as { agents: { name: string; capabilities: string[] }[] };
    expect(after.agents.find((a) => a.name === 'alice')?.capabilities).toEqual(['ts', 'docs']);
  });

  it('--dry-run prints the changes and writes nothing, mints no key', async () => {
    const p = await project();
    const r = await runBaton(['setup', 'claude-code', '--agent', 'bob', '--dry-run', '--project-dir', p.dir], { cwd: p.dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('+ .mcp.json (create)');
    expect(r.stdout).toContain('+ .claude/settings.json (create)');
    expect(r.stdout).toContain('+ .gitignore (create)');
    expect(r.stdout).toContain('dry run: nothing was written');
    expect(r.stdout).not.toMatch(KEY);
    for (const f of ['.mcp.json', '.claude', '.gitignore', '.baton/agents']) expect(existsSync(join(p.dir, f))).toBe(false);
    const agents = JSON.parse((await runBaton(['agent', 'list', '--json', '--data', p.data])).stdout) as { agents: { name: string }[] };
    expect(agents.agents.map((a) => a.name)).not.toContain('bob');
  });

  it('refuses a config file that is not JSON, writing nothing and minting no key', async () => {
    const p = await project();
    writeFileSync(join(p.dir, '.mcp.json'), '{ not json');
    const r = await runBaton(['setup', 'claude-code', '--agent', 'carol', '--project-dir', p.dir], { cwd: p.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('.mcp.json is not valid JSON');
    expect(readFileSync(join(p.dir, '.mcp.json'), 'utf8')).toBe('{ not json');
    expect(existsSync(join(p.data, 'agents'))).toBe(false);
    expect(existsSync(join(p.dir, '.gitignore'))).toBe(false);
  });

  it('refuses bad flags clearly', async () => {
    const p = await project();
    for (const [args, msg] of [
      [['setup', 'vim'], 'unknown client "vim"'],
      [['setup', 'cursor', '--agent', '../x'], '--agent'],
      [['setup', 'cursor', '--capabilities', 'a b'], '--capabilities'],
      [['setup', 'cursor', '--http', 'ftp://x'], '--http'],
      [['setup', 'cursor', '--http', 'http://u:p@127.0.0.1/mcp'], 'credentials in the URL'],
      [['setup', 'cursor', '--scope', 'user'], 'only codex'],
      [['setup', 'codex', '--scope', 'global'], '--scope'],
    ] as const) {
      const r = await runBaton([...args, '--project-dir', p.dir, '--data', p.data], { cwd: p.dir });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(msg);
    }
  });
});

describe('baton setup in a git repository', () => {
  it('a data dir of any name is never added by git (its own .gitignore), and project files are 0644 despite the hub\'s 077 umask', async () => {
    const t = tempDir('baton-setup-git-');
    cleanups.push(t.cleanup);
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: t.dir, encoding: 'utf8' });
    git('init', '-q');
    const data = join(t.dir, 'state');
    expect((await runBaton(['init', '--data', data], { cwd: t.dir })).code).toBe(0);
    const r = await runBaton(['setup', 'claude-code', '--agent', 'alice', '--data', data, '--project-dir', t.dir], {
      cwd: t.dir,
      env: { HOME: t.dir },
    });
    expect(r.code, r.stderr).toBe(0);
    const added = git('add', '-A', '-n').split('\n').filter((l) => l !== '');
    // The keys (agents/alice.env, admin-key.txt), secrets.json and the database stay out of git.
    expect(added.filter((l) => l.includes('state/'))).toEqual([]);
    expect(added.some((l) => l.includes('.mcp.json'))).toBe(true);
    expect(statSync(join(t.dir, '.mcp.json')).mode & 0o777).toBe(0o644);
    expect(statSync(join(t.dir, '.claude')).mode & 0o777).toBe(0o755);
    expect(statSync(join(data, 'agents', 'alice.env')).mode & 0o777).toBe(0o600);
  });
});

describe('baton setup --check', () => {
  it('is clean after setup, and reports a stale key, a missing hook and a moved data dir with exit 1', async () => {
    const p = await project();
    const setup = await runBaton(['setup', 'claude-code', '--agent', 'dave', '--project-dir', p.dir], { cwd: p.dir });
    expect(setup.code, setup.stderr).toBe(0);
    // CODEX_HOME: never the machine's own ~/.codex.
    const check = (): Promise<{ code: number; stdout: string; stderr: string }> => runBaton(['setup', '--check', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    const ok = await check();
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain('ok     claude-code');
    // The folder's trust in Claude Code (the user's answer, in ~/.claude.json) is a note, not drift.
    expect(ok.stdout).toContain('note   claude-code: Claude Code starts .mcp.json servers only once you trust');
    writeFileSync(join(p.home, '.claude.json'), JSON.stringify({ projects: { [p.dir]: { hasTrustDialogAccepted: true } } }));
    expect((await check()).stdout).not.toContain('note');

    // Stale key: revoked.
    const tokens = JSON.parse((await runBaton(['token', 'list', '--json', '--data', p.data])).stdout) as { tokens: { id: string; name: string }[] };
    const id = tokens.tokens.find((t) => t.name === 'dave')!.id;
    expect((await runBaton(['token', 'revoke', id, '--data', p.data])).code).toBe(0);
    const stale = await check();
    expect(stale.code).toBe(1);
    expect(stale.stdout).toContain('stale key');
    // Running setup again replaces the stale key (same agent) and the drift is gone.
    const fixed = await runBaton(['setup', 'claude-code', '--agent', 'dave', '--project-dir', p.dir], { cwd: p.dir });
    expect(fixed.code, fixed.stderr).toBe(0);
    expect((await check()).code).toBe(0);

    // Missing hook.
    const settingsFile = join(p.dir, '.claude', 'settings.json');
    const settings = json(settingsFile) as { hooks: Record<string, unknown> };
    delete settings.hooks.PreCompact;
    writeFileSync(settingsFile, JSON.stringify(settings));
    const hook = await check();
    expect(hook.code).toBe(1);
    expect(hook.stdout).toContain('no PreCompact hook');
    expect((await runBaton(['setup', 'claude-code', '--agent', 'dave', '--project-dir', p.dir], { cwd: p.dir })).code).toBe(0);
    expect((await check()).code).toBe(0);

    // Moved data dir.
    renameSync(p.data, join(p.dir, 'moved'));
    const moved = await runBaton(['setup', '--check', '--project-dir', p.dir, '--data', join(p.dir, 'moved')], { cwd: p.dir, env: p.env });
    expect(moved.code).toBe(1);
    expect(moved.stdout).toContain('holds no Baton hub (moved or removed)');
  });

  it('exits 1 when nothing is set up', async () => {
    const p = await project();
    const r = await runBaton(['setup', '--check', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('no client is set up');
  });
});

describe('baton setup codex', () => {
  it('writes [mcp_servers.baton] into the project\'s .codex/config.toml by default', async () => {
    const p = await project();
    const r = await runBaton(['setup', 'codex', '--agent', 'ivy', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(join(p.dir, '.codex', 'config.toml'), 'utf8');
    expect(text).not.toMatch(KEY);
    expect(readServer(text, 'baton')).toEqual({
      command: process.execPath,
      args: [BIN, 'mcp', '--data', p.data],
      env: { BATON_TOKEN_FILE: join(p.data, 'agents', 'ivy.env') },
    });
    expect(existsSync(join(p.env.CODEX_HOME!, 'config.toml'))).toBe(false);
    // Not drift, but said: Codex reads the project file only in a folder the user has trusted.
    const untrusted = await runBaton(['setup', '--check', 'codex', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    expect(untrusted.code).toBe(0);
    expect(untrusted.stdout).toContain(`note   codex: Codex reads ${join(p.dir, '.codex', 'config.toml')} only once you trust ${p.dir}`);
    writeFileSync(join(p.env.CODEX_HOME!, 'config.toml'), `model = "x"\n\n[projects.${JSON.stringify(p.dir)}]\ntrust_level = "trusted"\n`);
    const trusted = await runBaton(['setup', '--check', 'codex', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    expect(trusted.code).toBe(0);
    expect(trusted.stdout).not.toContain('note');
  });

  it('--scope user: writes [mcp_servers.baton] into $CODEX_HOME/config.toml keeping every other byte, and is idempotent', async () => {
    const p = await project();
    const file = join(p.env.CODEX_HOME!, 'config.toml');
    const theirs = '# my config\nmodel = "o3"\n\n[mcp_servers.other]\ncommand = "x"\nargs = ["a"]\n\n# trailing comment\n[profiles.fast]\nmodel = "o4"\n';
    writeFileSync(file, theirs);
    const r = await runBaton(['setup', 'codex', '--agent', 'erin', '--scope', 'user', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text.startsWith(theirs)).toBe(true);
    expect(text).not.toMatch(KEY);
    expect(readServer(text, 'baton')).toEqual({
      command: process.execPath,
      args: [BIN, 'mcp', '--data', p.data],
      env: { BATON_TOKEN_FILE: join(p.data, 'agents', 'erin.env') },
    });
    const again = await runBaton(['setup', 'codex', '--agent', 'erin', '--scope', 'user', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(text);
    expect((await runBaton(['setup', '--check', 'codex', '--project-dir', p.dir], { cwd: p.dir, env: p.env })).code).toBe(0);
  });

  it('refuses to guess at a server defined by dotted keys or an inline table', async () => {
    const p = await project();
    const file = join(p.env.CODEX_HOME!, 'config.toml');
    for (const theirs of ['[mcp_servers]\nbaton = { command = "x" }\n', 'mcp_servers.baton.command = "x"\n']) {
      writeFileSync(file, theirs);
      const r = await runBaton(['setup', 'codex', '--agent', 'fay', '--scope', 'user', '--project-dir', p.dir], { cwd: p.dir, env: p.env });
      expect(r.code, theirs).toBe(2);
      expect(r.stderr).toContain('dotted keys or an inline table');
      expect(readFileSync(file, 'utf8')).toBe(theirs);
    }
  });
});

describe('the TOML editor', () => {
  const table = serverTable('baton', { command: '/n "q"', args: ['a\\b', 'c'], env: { K: 'v' } });

  it('replaces our tables only, keeping what follows and another server of a longer name', () => {
    const text = `a = 1\n[mcp_servers.baton]\ncommand = "old"\nx = """\n[mcp_servers.fake]\n"""\n[mcp_servers.baton.env]\nOLD = "1"\n\n# next\n[mcp_servers.baton2]\ncommand = "keep"\n`;
    const out = replaceServer(text, 'baton', table, 'f');
    expect(out).toBe(`a = 1\n${table}\n# next\n[mcp_servers.baton2]\ncommand = "keep"\n`);
    expect(readServer(out, 'baton')).toEqual({ command: '/n "q"', args: ['a\\b', 'c'], env: { K: 'v' } });
    expect(readServer(out, 'baton2')).toEqual({ command: 'keep' });
    expect(replaceServer(out, 'baton', table, 'f')).toBe(out);
  });

  it('refuses two separate definitions', () => {
    expect(() => replaceServer('[mcp_servers.baton]\n[x]\n[mcp_servers.baton.env]\n', 'baton', table, 'f')).toThrow(/two places/);
  });
});

describe('baton setup cursor and gemini-cli', () => {
  it('write the documented schemas: .cursor/mcp.json mcpServers {command,args,env}, .gemini/settings.json mcpServers {command,args,env} / {httpUrl,headers}', async () => {
    const p = await project();
    expect((await runBaton(['setup', 'cursor', '--agent', 'gus', '--project-dir', p.dir], { cwd: p.dir })).code).toBe(0);
    const cursor = json(join(p.dir, '.cursor', 'mcp.json')) as { mcpServers: Record<string, Record<string, unknown>> };
    expect(Object.keys(cursor)).toEqual(['mcpServers']);
    expect(cursor.mcpServers.baton).toEqual({ command: process.execPath, args: [BIN, 'mcp', '--data', p.data], env: { BATON_TOKEN_FILE: join(p.data, 'agents', 'gus.env') } });

    expect((await runBaton(['setup', 'gemini-cli', '--agent', 'hal', '--project-dir', p.dir], { cwd: p.dir })).code).toBe(0);
    const gemini = json(join(p.dir, '.gemini', 'settings.json')) as { mcpServers: Record<string, Record<string, unknown>> };
    expect(gemini.mcpServers.baton).toEqual({ command: process.execPath, args: [BIN, 'mcp', '--data', p.data], env: { BATON_TOKEN_FILE: join(p.data, 'agents', 'hal.env') } });

    const http = await runBaton(['setup', 'gemini-cli', '--agent', 'hal', '--http', 'http://127.0.0.1:7410/mcp', '--project-dir', p.dir], { cwd: p.dir });
    expect(http.code, http.stderr).toBe(0);
    const g2 = json(join(p.dir, '.gemini', 'settings.json')) as { mcpServers: Record<string, Record<string, unknown>> };
    // Gemini CLI: `httpUrl` is Streamable HTTP (`url` would be SSE); `$VAR` expands from the environment.
    expect(g2.mcpServers.baton).toEqual({ httpUrl: 'http://127.0.0.1:7410/mcp', headers: { Authorization: 'Bearer $BATON_TOKEN' } });
    const c2 = await runBaton(['setup', 'cursor', '--agent', 'gus', '--http', 'http://127.0.0.1:7410/mcp', '--project-dir', p.dir], { cwd: p.dir });
    expect(c2.code).toBe(0);
    expect((json(join(p.dir, '.cursor', 'mcp.json')) as { mcpServers: Record<string, unknown> }).mcpServers.baton).toEqual({
      url: 'http://127.0.0.1:7410/mcp',
      headers: { Authorization: 'Bearer ${env:BATON_TOKEN}' },
    });
  });
});
