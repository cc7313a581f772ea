import { cliLogLevel, hubExists, locateConfig } from './common.js';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
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
 * a commit whose staged paths are covered by another agent's live lock and names the holder, and
 * a pre-push hook that runs `baton guard check --push`, which refuses a push whose commits touch
 * such paths. A rename counts as both its old and its new path. `--warn` installs hooks that
 * print the same findings and let the commit or push through.
 *
 * Worktrees: every worktree of a repository shares its hooks (git keeps them in the common git
 * dir) and its hub (the data dir beside the common git dir, see os/datadir.ts); git names paths
 * relative to the worktree's top, which is the same relative path in every worktree, so locks
 * taken from any worktree cover the same files in all of them. When the data dir lives in a
 * subdirectory of the repository (a project in a monorepo), paths are taken relative to it.
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
  warn?: boolean;
  push?: boolean;
}

export type HookKind = 'pre-commit' | 'pre-push';

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

/** Whether the repository has this commit (exit status of `git cat-file -e`). */
async function hasCommit(repo: string, sha: string): Promise<boolean> {
  try {
    await run('git', ['cat-file', '-e', `${sha}^{commit}`], { cwd: repo, encoding: 'utf8' });
    return true;
  } catch {
    return false;
  }
}

/** POSIX sh single quoting: the value can hold nothing the shell interprets. */
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** Paths come from git and may hold anything but NUL: show control characters escaped. */
// eslint-disable-next-line no-control-regex
const printable = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

export function hookScript(
  dataDir: string,
  agent: string | undefined,
  project: string | undefined,
  kind: HookKind = 'pre-commit',
  warn = false,
): string {
  const args = ['guard', 'check', '--data', dataDir];
  if (kind === 'pre-push') args.push('--push');
  if (agent !== undefined) args.push('--agent', agent);
  if (project !== undefined) args.push('--in-project', project);
  if (warn) args.push('--warn');
  const what = kind === 'pre-push' ? 'pushes of commits touching' : 'commits touching';
  return [
    '#!/bin/sh',
    `${MARKER}: installed by \`baton guard install\`; ${warn ? 'warns about' : 'refuses'} ${what} paths another agent has locked.`,
    // pre-push: git passes the refs on stdin, which exec hands on to baton.
    `exec ${[process.execPath, BIN, ...args].map(sq).join(' ')}`,
    '',
  ].join('\n');
}

async function install(flags: GuardFlags): Promise<void> {
  const repo = resolve(flags.repo ?? process.cwd());
  const { agent, project } = checkNames(flags, false);
  const dataDir = resolve(configOf(flags).dataDir);
  const hooks = resolve(repo, (await git(repo, ['rev-parse', '--git-path', 'hooks'])).trim());
  const kinds: HookKind[] = ['pre-commit', 'pre-push'];
  // Every hook is checked before any is written: a refusal changes nothing.
  const foreign = kinds.filter((k) => existsSync(join(hooks, k)) && !readFileSync(join(hooks, k), 'utf8').includes(MARKER));
  if (foreign.length > 0 && flags.force !== true) {
    throw new BatonError(
      'conflict',
      `${foreign.map((k) => join(hooks, k)).join(' and ')} ${foreign.length === 1 ? 'exists and is' : 'exist and are'} not Baton's; pass --force to replace (kept as <hook>.before-baton)`,
    );
  }
  mkdirSync(hooks, { recursive: true });
  for (const kind of kinds) {
    const hook = join(hooks, kind);
    if (foreign.includes(kind)) renameSync(hook, join(hooks, `${kind}.before-baton`));
    writeFileSync(hook, hookScript(dataDir, agent, project, kind, flags.warn === true), { mode: 0o755 });
    chmodSync(hook, 0o755);
    process.stdout.write(`${hook}\n`);
  }
  const who = agent === undefined ? 'any agent but $BATON_AGENT' : `agents other than ${agent}`;
  process.stderr.write(
    `baton guard installed (${flags.warn === true ? 'warn mode: findings are printed, nothing is refused' : 'refusing'}): commits and pushes touching paths locked by ${who}\n`,
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

const ZEROS = /^0+$/;

/**
 * The paths a push's commits touch: git gives pre-push one line per ref on stdin, `<local ref>
 * <local sha> <remote ref> <remote sha>`. A deleted ref touches nothing; a new one, its commits
 * that no remote-tracking ref has.
 */
async function pushedPaths(repo: string, stdin: string): Promise<string[]> {
  const paths = new Set<string>();
  for (const line of stdin.split('\n')) {
    const [, local, , remote] = line.trim().split(/\s+/);
    if (local === undefined || remote === undefined || !/^[0-9a-f]{40,64}$/.test(local) || !/^[0-9a-f]{40,64}$/.test(remote)) continue;
    if (ZEROS.test(local)) continue;
    // A remote sha this clone has never seen (someone pushed since the last fetch; a force push):
    // `remote..local` cannot be computed, so the push is taken as what no remote-tracking ref has.
    const known = !ZEROS.test(remote) && (await hasCommit(repo, remote));
    const range = known ? [`${remote}..${local}`] : [local, '--not', '--remotes'];
    const out = await git(repo, ['log', '--no-renames', '--name-only', '--format=', '-z', ...range, '--']);
    for (const p of out.split('\0')) {
      const path = p.replace(/^\n+/, '');
      if (path !== '') paths.add(path);
    }
  }
  return [...paths];
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY === true) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const realOr = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
};

/**
 * git's paths (relative to the work tree's top, the same in every worktree) as lock paths
 * (relative to the project directory, the data dir's parent). When the project directory is a
 * subdirectory of the repository's main worktree, paths outside it are not lockable and are
 * dropped; when the data dir is outside the repository, git's paths are used as they are.
 */
export async function lockNamespace(repo: string, dataDir: string, paths: readonly string[]): Promise<string[]> {
  const common = resolve(repo, (await git(repo, ['rev-parse', '--git-common-dir'])).trim());
  if (basename(common) !== '.git') return [...paths];
  const rel = relative(realOr(dirname(common)), realOr(dirname(resolve(dataDir))));
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return [...paths];
  const prefix = `${rel.split(sep).join('/')}/`;
  return paths.filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length));
}

async function check(flags: GuardFlags): Promise<void> {
  const repo = resolve(flags.repo ?? process.cwd());
  const { agent, project } = checkNames(flags, true);
  const push = flags.push === true;
  // --no-renames: a rename is its old path (deleted) and its new path (added); both are checked.
  const touched = push
    ? await pushedPaths(repo, await readStdin())
    : (await git(repo, ['diff', '--cached', '--name-only', '--no-renames', '-z'])).split('\0').filter((p) => p !== '');
  if (touched.length === 0) return;
  const config = configOf(flags);
  if (!hubExists(config)) {
    process.stderr.write(`baton guard: no Baton database in ${resolve(config.dataDir)}; nothing is locked\n`);
    return;
  }
  const paths = await lockNamespace(repo, config.dataDir, touched);
  if (paths.length === 0) return;
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
  const found = violations(paths, locks, agent);
  if (found.length === 0) return;
  for (const v of found) {
    process.stderr.write(`${printable(v.path)} — locked by ${v.lock.agent} (${v.lock.mode}, until ${v.lock.expires_at})\n`);
  }
  const n = new Set(found.map((v) => v.path)).size;
  const whose = agent === undefined ? 'agents (set BATON_AGENT or --agent to name yourself)' : 'other agents';
  const what = push ? `${n} path${n === 1 ? '' : 's'} the pushed commits touch ${n === 1 ? 'is' : 'are'}` : `${n} staged path${n === 1 ? ' is' : 's are'}`;
  if (flags.warn === true) {
    process.stderr.write(`baton guard: warning (warn mode, ${push ? 'push' : 'commit'} allowed): ${what} locked by ${whose}\n`);
    return;
  }
  process.stderr.write(`baton guard: ${push ? 'push' : 'commit'} refused: ${what} locked by ${whose}\n`);
  process.exitCode = 1;
}

export function registerGuardCommands(program: Command): void {
  const guard = program.command('guard').description('git pre-commit and pre-push guard against committing or pushing paths other agents have locked');
  guard
    .command('install')
    .description('Install git pre-commit and pre-push hooks that run `baton guard check` (shared by every worktree)')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA); stored in the hook as an absolute path')
    .option('--config <file>', 'JSON config file')
    .option('--repo <dir>', 'the git repository (default: the current directory)')
    .option('--agent <name>', 'the agent committing from this checkout (default: $BATON_AGENT at commit time)')
    .option('--in-project <name>', 'Baton project (default: default)')
    .option('--force', "replace hooks that are not Baton's (kept as <hook>.before-baton)")
    .option('--warn', 'warn mode: the hooks print what is locked and let the commit or push through')
    .action(async (opts: GuardFlags) => install(opts));
  guard
    .command('check')
    .description("Exit 1 naming the holders if staged paths are locked by another agent (what the hook runs)")
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--repo <dir>', 'the git repository (default: the current directory)')
    .option('--agent <name>', 'the committing agent (default: $BATON_AGENT)')
    .option('--in-project <name>', 'Baton project (default: default)')
    .option('--push', "check the commits of a push (git's pre-push refs on stdin) instead of the staged paths")
    .option('--warn', 'print what is locked, exit 0')
    .action(async (opts: GuardFlags) => check(opts));
}
