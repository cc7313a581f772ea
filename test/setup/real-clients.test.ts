import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, runBaton, tempDir, woken } from '../helpers.js';
import { codexAppServer, installClient, loudSkip } from './clients.js';

/**
 * Acceptance with the real clients from npm (issue 11): after `baton setup <client>`, the client
 * itself starts Baton from the config it was given and reaches it (Claude Code, Codex, and Gemini
 * CLI, whose `mcp list` connects too; Cursor has no CLI on npm: its config's shape is asserted in
 * setup.test.ts). Versions are pinned (the
 * install is cached under os.tmpdir()); skipped, loudly, only when the registry is unreachable.
 */
const CLAUDE = { pkg: '@anthropic-ai/claude-code', version: '2.1.332', bin: 'claude' };
const CODEX = { pkg: '@openai/codex', version: '0.171.0', bin: 'codex' };
const GEMINI = { pkg: '@google/gemini-cli', version: '0.61.0', bin: 'gemini' };
const run = promisify(execFile);

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function project(): Promise<{ dir: string; data: string; home: string }> {
  const t = tempDir('baton-real-');
  cleanups.push(t.cleanup);
  const dir = join(t.dir, 'repo');
  const home = join(t.dir, 'home');
  mkdirSync(dir);
  mkdirSync(home);
  await run('git', ['init', '-q', dir]);
  const data = join(dir, '.baton');
  const init = await runBaton(['init', '--data', data], { cwd: dir });
  expect(init.code, init.stderr).toBe(0);
  return { dir, data, home };
}

/** Starts the server exactly as the config file's `mcpServers.baton` says and asks who it is. */
async function whoamiVia(file: string, env: Record<string, string>): Promise<string | undefined> {
  const entry = (JSON.parse(readFileSync(file, 'utf8')) as { mcpServers: Record<string, { command: string; args: string[]; env: Record<string, string> }> })
    .mcpServers.baton!;
  const client = new Client({ name: 'as-client', version: '1.0.0' });
  await client.connect(new StdioClientTransport({ command: entry.command, args: entry.args, env: { ...env, ...entry.env }, stderr: 'pipe' }));
  try {
    const who = (await client.callTool({ name: 'whoami', arguments: {} })) as { isError?: boolean; structuredContent?: { agent?: { name?: string } } };
    expect(who.isError ?? false).toBe(false);
    return who.structuredContent?.agent?.name;
  } finally {
    await client.close();
  }
}

describe('real clients', () => {
  it('claude-code: `claude mcp list` reports Baton connected after `baton setup claude-code`', { timeout: 900_000 }, async (ctx) => {
    const installed = await installClient(CLAUDE.pkg, CLAUDE.version, CLAUDE.bin);
    if ('unreachable' in installed) return ctx.skip(loudSkip('Claude Code', installed.unreachable));
    const p = await project();
    const setup = await runBaton(['setup', 'claude-code', '--agent', 'claude-1'], { cwd: p.dir });
    expect(setup.code, setup.stderr).toBe(0);
    // The user's one-time "trust this folder" answer, which Claude Code keeps in ~/.claude.json
    // (not a project file; `baton setup` does not answer that prompt for the user).
    writeFileSync(join(p.home, '.claude.json'), JSON.stringify({ projects: { [p.dir]: { hasTrustDialogAccepted: true } } }));
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p.home };
    const { stdout } = await run(installed.bin, ['mcp', 'list'], { cwd: p.dir, env, timeout: 120_000, encoding: 'utf8' });
    const line = stdout.split('\n').find((l) => l.startsWith('baton:'));
    expect(line, stdout).toBeDefined();
    expect(line).toContain('Connected');
    expect(line).not.toMatch(/bat_[A-Za-z0-9_-]{43}/);
    // `claude mcp list` checks the handshake only (a server without a valid key answers it too, and
    // refuses every call): the exact command and env it launched must also authenticate as the agent.
    expect(await whoamiVia(join(p.dir, '.mcp.json'), env)).toBe('claude-1');
  });

  it('claude-code --http: `claude mcp list` reaches `baton serve` with the key from its private file (headersHelper)', { timeout: 900_000 }, async (ctx) => {
    const installed = await installClient(CLAUDE.pkg, CLAUDE.version, CLAUDE.bin);
    if ('unreachable' in installed) return ctx.skip(loudSkip('Claude Code', installed.unreachable));
    const p = await project();
    const serve = spawn(process.execPath, [BIN, 'serve', '--data', p.data, '--port', '0'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p.home, BATON_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise((r) => serve.on('exit', r));
    try {
      let err = '';
      const url = await woken(
        new Promise<string>((resolve) =>
          serve.stderr.on('data', (b: Buffer) => {
            err += b.toString('utf8');
            const m = /listening on (http:\/\/\S+?) /.exec(err);
            if (m !== null) resolve(m[1]!);
          }),
        ),
      );
      const setup = await runBaton(['setup', 'claude-code', '--agent', 'claude-http', '--http', `${url}/mcp`], { cwd: p.dir });
      expect(setup.code, setup.stderr).toBe(0);
      expect(readFileSync(join(p.dir, '.mcp.json'), 'utf8')).not.toMatch(/bat_[A-Za-z0-9_-]{43}/);
      writeFileSync(join(p.home, '.claude.json'), JSON.stringify({ projects: { [p.dir]: { hasTrustDialogAccepted: true } } }));
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p.home };
      // Without a valid Authorization header Baton answers 401 and this line says "Failed to connect".
      const { stdout } = await run(installed.bin, ['mcp', 'list'], { cwd: p.dir, env, timeout: 120_000, encoding: 'utf8' });
      const line = stdout.split('\n').find((l) => l.startsWith('baton:'));
      expect(line, stdout).toContain('(HTTP)');
      expect(line).toContain('Connected');
    } finally {
      serve.kill('SIGTERM');
      await exited;
    }
  });

  it('gemini-cli: `gemini mcp list` reports Baton connected after `baton setup gemini-cli`', { timeout: 900_000 }, async (ctx) => {
    const installed = await installClient(GEMINI.pkg, GEMINI.version, GEMINI.bin);
    if ('unreachable' in installed) return ctx.skip(loudSkip('Gemini CLI', installed.unreachable));
    const p = await project();
    const setup = await runBaton(['setup', 'gemini-cli', '--agent', 'gemini-1'], { cwd: p.dir });
    expect(setup.code, setup.stderr).toBe(0);
    // The user's one-time folder trust (Gemini CLI disables a project's servers in untrusted folders).
    mkdirSync(join(p.home, '.gemini'));
    writeFileSync(join(p.home, '.gemini', 'trustedFolders.json'), JSON.stringify({ [p.dir]: 'TRUST_FOLDER' }));
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p.home };
    // It prints the list on stderr.
    const { stdout, stderr } = await run(installed.bin, ['mcp', 'list'], { cwd: p.dir, env, timeout: 120_000, encoding: 'utf8' });
    const line = `${stdout}\n${stderr}`.split('\n').find((l) => l.includes('baton:'));
    expect(line, stdout + stderr).toBeDefined();
    expect(line).toContain('Connected');
    expect(await whoamiVia(join(p.dir, '.gemini', 'settings.json'), env)).toBe('gemini-1');
  });

  it('codex: `codex app-server` lists Baton\'s tools and calls whoami as the set-up agent', { timeout: 900_000 }, async (ctx) => {
    const installed = await installClient(CODEX.pkg, CODEX.version, CODEX.bin);
    if ('unreachable' in installed) return ctx.skip(loudSkip('Codex', installed.unreachable));
    const p = await project();
    const codexHome = join(p.home, '.codex');
    mkdirSync(codexHome);
    // The user's one-time "trust this folder" answer, which Codex keeps in its own config; it reads
    // a project's .codex/config.toml only in a trusted project.
    writeFileSync(join(codexHome, 'config.toml'), `[projects.${JSON.stringify(p.dir)}]\ntrust_level = "trusted"\n`);
    const setup = await runBaton(['setup', 'codex', '--agent', 'codex-1'], { cwd: p.dir, env: { CODEX_HOME: codexHome } });
    expect(setup.code, setup.stderr).toBe(0);
    const server = codexAppServer(installed.bin, p.dir, { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p.home, CODEX_HOME: codexHome });
    try {
      await server.request('initialize', { clientInfo: { name: 'baton-test', version: '1.0.0' } });
      server.notify('initialized');
      const thread = await server.request<{ thread: { id: string } }>('thread/start', { ephemeral: true, cwd: p.dir });
      const status = await server.request<{ data: { name: string; tools: Record<string, unknown> | null }[] }>('mcpServerStatus/list', { threadId: thread.thread.id });
      const baton = status.data.find((s) => s.name === 'baton');
      expect(baton, server.stderr()).toBeDefined();
      expect(Object.keys(baton!.tools ?? {})).toEqual(expect.arrayContaining(['whoami', 'task_claim', 'message_send']));
      const who = await server.request<{ structuredContent?: { agent?: { name?: string; role?: string } }; isError?: boolean }>('mcpServer/tool/call', {
        server: 'baton',
        threadId: thread.thread.id,
        tool: 'whoami',
        arguments: {},
      });
      expect(who.isError ?? false).toBe(false);
      expect(who.structuredContent?.agent).toMatchObject({ name: 'codex-1', role: 'worker' });
    } finally {
      await server.close();
    }
  });
});
