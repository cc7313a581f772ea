import { cliLogLevel, hubExists, locateConfig } from './common.js';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import type { CallMeta } from '../auth/principal.js';
import type { Config } from '../config.js';
import { BatonError } from '../core/errors.js';
import { globCovers } from '../core/globs.js';
import { Hub } from '../hub.js';
import type { LockOut } from '../ops/locks.js';

/**
 * `baton guard install` writes a git pre-commit hook that runs `baton guard check`, which refuses
 * a commit whose staged paths are covered by another agent's live lock and names the holder.
 * git is always run through execFile with an argument array: no shell, no user input in one.
 * The hook itself is a two-line sh script whose every value is single-quoted (and names are
 * checked against strict patterns first).
 */
const MARKER = '# baton-guard';
const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const PROJECT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/baton.js');

const run = promisify(execFile);

interface GuardFlags {
  data?: string;
  config?: string;
  repo?: string;
  agent?: string;
  inProject?: string;
  force?: boolean;
}

function configOf(flags: GuardFlags): Config {
  // A missing data dir is not an error here: the hook then finds nothing locked.
  return locateConfig(flags, { logLevel: cliLogLevel() }).config;
}

function checkNames(flags: GuardFlags, fromEnv: boolean): { agent: string | undefined; project: string | undefined } {
  const env = fromEnv && process.env.BATON_AGENT !== '' ? process.env.BATON_AGENT : undefined;
  const agent = flags.agent ?? env;
  if (agent !== undefined && !AGENT_NAME.test(agent)) throw new BatonError('invalid_input', 'expected an agent name for --agent');
  if (flags.inProject !== undefined && !PROJECT_NAME.test(flags.inProject)) {
    throw new BatonError('invalid_input', 'expected a project name for --in-project');
  }
  return { agent, project: flags.inProject };
}

async function git(repo: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run('git', [...args], { cwd: repo, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch {
    throw new BatonError('invalid_input', `git ${args[0] ?? ''} failed in ${repo} (is it a git repository?)`);
  }
}

/** POSIX sh single quoting: the value can hold nothing the shell interprets. */
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Paths come from git and may hold anything but NUL: show control characters escaped. */
// eslint-disable-next-line no-control-regex
const printable = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

export function hookScript(dataDir: string, agent: string | undefined, project: string | undefined): string {
  const args = ['guard', 'check', '--data', dataDir];
  if (agent !== undefined) args.push('--agent', agent);
  if (project !== undefined) args.push('--in-project', project);
  return [
    '#!/bin/sh',
    `${MARKER}: installed by \`baton guard install\`; refuses commits touching paths another agent has locked.`,
    `exec ${[process.execPath, BIN, ...args].map(sq).join(' ')}`,
    '',
  ].join('\n');
}

async function install(flags: GuardFlags): Promise<void> {
  const repo = resolve(flags.repo ?? process.cwd());
  const { agent, project } = checkNames(flags, false);
  const dataDir = resolve(configOf(flags).dataDir);
  const hooks = resolve(repo, (await git(repo, ['rev-parse', '--git-path', 'hooks'])).trim());
  const hook = join(hooks, 'pre-commit');
  if (existsSync(hook) && !readFileSync(hook, 'utf8').includes(MARKER)) {
    if (flags.force !== true) {
      throw new BatonError('conflict', `${hook} exists and is not Baton's; pass --force to replace it (it is kept as pre-commit.before-baton)`);
    }
    renameSync(hook, join(hooks, 'pre-commit.before-baton'));
  }
  mkdirSync(hooks, { recursive: true });
  writeFileSync(hook, hookScript(dataDir, agent, project), { mode: 0o755 });
  chmodSync(hook, 0o755);
  process.stdout.write(`${hook}\n`);
  process.stderr.write(
    `baton guard installed: commits touching paths locked by ${agent === undefined ? 'any agent but $BATON_AGENT' : `agents other than ${agent}`} are refused\n`,
  );
}

export interface Violation {
  path: string;
  lock: LockOut;
}

/** The staged paths covered by a live lock of another agent than `agent` (every agent when none). */
export function violations(staged: readonly string[], locks: readonly LockOut[], agent: string | undefined): Violation[] {
  const out: Violation[] = [];
  const others = locks.filter((l) => l.agent !== agent);
  for (const path of staged) {
    for (const lock of others) {
      if (lock.paths.some((p) => globCovers(p, path))) out.push({ path, lock });
    }
  }
  return out;
}

async function check(flags: GuardFlags): Promise<void> {
  const repo = resolve(flags.repo ?? process.cwd());
  const { agent, project } = checkNames(flags, true);
  const staged = (await git(repo, ['diff', '--cached', '--name-only', '--no-renames', '-z']))
    .split('\0')
    .filter((p) => p !== '');
  if (staged.length === 0) return;
  const config = configOf(flags);
  if (!hubExists(config)) {
    process.stderr.write(`baton guard: no Baton database in ${resolve(config.dataDir)}; nothing is locked\n`);
    return;
  }
  const hub = await Hub.open(config);
  const locks: LockOut[] = [];
  try {
    const principal = await hub.localPrincipal('operator', 'admin', project);
    let cursor: string | null = null;
    do {
      const meta: CallMeta = { requestId: hub.newRequestId(), transport: 'cli' };
      const input: Record<string, unknown> = cursor === null ? { limit: 200 } : { limit: 200, cursor };
      const page = (await hub.call('lock_list', input, principal, meta)) as { locks: LockOut[]; next_cursor: string | null };
      locks.push(...page.locks);
      cursor = page.next_cursor;
    } while (cursor !== null);
  } finally {
    await hub.close();
  }
  const found = violations(staged, locks, agent);
  if (found.length === 0) return;
  for (const v of found) {
    process.stderr.write(`${printable(v.path)} — locked by ${v.lock.agent} (${v.lock.mode}, until ${v.lock.expires_at})\n`);
  }
  const paths = new Set(found.map((v) => v.path)).size;
  process.stderr.write(
    `baton guard: commit refused: ${paths} staged path${paths === 1 ? ' is' : 's are'} locked by ${agent === undefined ? 'agents (set BATON_AGENT or --agent to name yourself)' : 'other agents'}\n`,
  );
  process.exitCode = 1;
}

export function registerGuardCommands(program: Command): void {
  const guard = program.command('guard').description('git pre-commit guard against committing paths other agents have locked');
  guard
    .command('install')
    .description('Install a git pre-commit hook that runs `baton guard check`')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA); stored in the hook as an absolute path')
    .option('--config <file>', 'JSON config file')
    .option('--repo <dir>', 'the git repository (default: the current directory)')
    .option('--agent <name>', 'the agent committing from this checkout (default: $BATON_AGENT at commit time)')
    .option('--in-project <name>', 'Baton project (default: default)')
    .option('--force', "replace a pre-commit hook that is not Baton's (kept as pre-commit.before-baton)")
    .action(async (opts: GuardFlags) => install(opts));
  guard
    .command('check')
    .description("Exit 1 naming the holders if staged paths are locked by another agent (what the hook runs)")
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--repo <dir>', 'the git repository (default: the current directory)')
    .option('--agent <name>', 'the committing agent (default: $BATON_AGENT)')
    .option('--in-project <name>', 'Baton project (default: default)')
    .action(async (opts: GuardFlags) => check(opts));
}
