import type * as ChildProcess from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { BatonError } from '../core/errors.js';

/** child_process, loaded on first use (a `baton mcp` start need not pay for it; issue 11). */
const childProcess = (): typeof ChildProcess => process.getBuiltinModule('node:child_process');

/**
 * The git commit a checkpoint may make for an agent (S34). Rules, each load-bearing:
 * - `execFile` with an argument array, never a shell: nothing in a message or path is interpreted.
 * - The message is one argument after `-m`; paths come after `--`, with literal pathspecs, so a
 *   path can be neither an option (`--all`) nor pathspec magic (`:(top)`, `*`).
 * - No `--author`, no `-c user.*`: the commit carries the user's own configured git identity.
 * - Git runs no program a repository configures (see SAFE_CONFIG and refuseProgramConfig): a
 *   repository is a directory an agent may be able to write, so its `.git/config` is the agent's
 *   word, not the operator's. System and global config stay in force: they are the operator's
 *   (and hold the identity the commit must carry).
 * - Every path is checked by `realpath` (a symlink cannot carry a commit out of the allowlist).
 * - Every call is bounded by one deadline for the whole commit.
 * - Only what is staged is committed; nothing staged → no commit, sha null.
 */
export interface CommitRequest {
  /** Absolute path of a directory inside a git work tree, or '.' for the hub's working directory. */
  readonly repo: string;
  readonly message: string;
  /** Project-relative paths to stage first (already normalised by the caller). */
  readonly paths?: readonly string[];
  /** Bound on the whole commit (every git call together). */
  readonly timeoutMs?: number;
  /** What '.' means (default: the process's working directory). */
  readonly base?: string;
  /** Repository roots commits are allowed in (absolute paths); absent: anywhere (tests). */
  readonly allowed?: readonly string[];
}

export const GIT_TIMEOUT_MS = 30_000;

/**
 * Command-line config wins over every config file, so each single-valued key that makes git run a
 * program is pinned here. Hooks: `core.hooksPath=/dev/null` (and `--no-verify`) means no hook runs,
 * so a checkpoint commit is not seen by `baton guard`'s pre-commit hook (the hub is the caller).
 */
export const SAFE_CONFIG: readonly string[] = [
  'core.fsmonitor=false',
  'core.hooksPath=/dev/null',
  'core.untrackedCache=false',
  'core.sshCommand=false',
  'core.gitProxy=',
  'core.askPass=',
  'core.pager=cat',
  'core.editor=true',
  'sequence.editor=true',
  'credential.helper=',
  'diff.external=',
  'gpg.program=false',
  'gpg.ssh.program=false',
  'gpg.x509.program=false',
  'commit.gpgSign=false',
  'protocol.allow=never',
  // No background gc or maintenance inside the commit's time bound.
  'gc.auto=0',
  'maintenance.auto=false',
];

/**
 * Keys git looks up per driver or hook name (`filter.<driver>.clean` for a `.gitattributes` line,
 * config-defined hooks), which no `-c` can neutralise in general, plus a non-boolean
 * `core.fsmonitor` and `core.worktree` (which moves the work tree). A repository whose own config
 * (local or worktree scope, includes resolved) sets any of them is refused.
 */
const PROGRAM_KEYS = /^(filter\..+\.(clean|smudge|process)|hook\..+|core\.worktree)$/i;
const BOOLEAN = /^(true|false|yes|no|on|off|1|0|)$/i;

interface Run {
  code: number;
  stdout: string;
}

function git(cwd: string, args: readonly string[], deadline: number): Promise<Run> {
  const timeout = Math.max(1, deadline - Date.now());
  const config = SAFE_CONFIG.flatMap((c) => ['-c', c]);
  return new Promise((done, fail) => {
    childProcess().execFile(
      'git',
      [...config, '-C', cwd, '--literal-pathspecs', ...args],
      {
        timeout,
        killSignal: 'SIGKILL',
        maxBuffer: 1024 * 1024,
        windowsHide: true,
        // Never wait for a credential or editor prompt; identity still comes from the user's config.
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_EDITOR: 'true', GIT_PAGER: 'cat', GIT_ASKPASS: '', SSH_ASKPASS: '' },
      },
      (err, stdout) => {
        if (err === null) return done({ code: 0, stdout: String(stdout) });
        const e = err as NodeJS.ErrnoException & { code?: number | string; killed?: boolean };
        if (e.code === 'ENOENT') return fail(new BatonError('unavailable', 'git is not available on the server'));
        if (e.killed === true) return fail(new BatonError('unavailable', 'git timed out'));
        if (typeof e.code === 'number') return done({ code: e.code, stdout: String(stdout) });
        fail(new BatonError('unavailable', 'git could not be run'));
      },
    );
  });
}

export function resolveRepo(repo: string, base: string = process.cwd()): string {
  if (repo === '.') return resolve(base);
  if (!isAbsolute(repo) || repo.includes('\0')) {
    throw new BatonError('invalid_input', "commit.repo: expected an absolute path or '.'");
  }
  return resolve(repo);
}

const within = (path: string, root: string): boolean =>
  path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

/** The real path (symlinks resolved), or null when it does not exist. */
function real(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

/** The real path of `path`'s nearest existing ancestor (itself included), joined with the rest. */
function realOfNearest(path: string): string {
  let dir = path;
  const rest: string[] = [];
  while (!existsSync(dir)) {
    const up = dirname(dir);
    if (up === dir) break;
    rest.unshift(relative(up, dir));
    dir = up;
  }
  return resolve(real(dir) ?? dir, ...rest);
}

const outside = (): BatonError =>
  new BatonError('forbidden', 'commit.repo is outside the repositories Baton may commit in (gitRepos)');

/**
 * Everything that can refuse a commit before git runs a command that reads the work tree: the
 * real repository directory inside an allowed root, its work tree's top inside that root (or the
 * root inside it: a project in a monorepo), no program-running config of its own, every path's
 * real parent inside the same bounds. Returns where to run git and the bound for paths.
 */
async function checkRepo(req: CommitRequest, deadline: number): Promise<{ cwd: string; top: string; root: string }> {
  const lexical = resolveRepo(req.repo, req.base);
  const cwd = real(lexical);
  const roots = req.allowed?.map((r) => real(r) ?? resolve(r));
  // A directory that does not exist is refused by the allowlist first when it lies outside.
  if (cwd === null) {
    if (roots !== undefined && !roots.some((root) => within(lexical, root))) throw outside();
    throw new BatonError('invalid_input', 'commit.repo is not a git work tree');
  }
  const root = roots === undefined ? '/' : roots.find((r) => within(cwd, r));
  if (root === undefined) throw outside();
  const inside = await git(cwd, ['rev-parse', '--is-inside-work-tree', '--show-toplevel', '--absolute-git-dir', '--git-common-dir'], deadline);
  const [isTree, topLine, gitDir, commonDir] = inside.stdout.split('\n');
  if (inside.code !== 0 || isTree !== 'true' || topLine === undefined || gitDir === undefined || commonDir === undefined) {
    throw new BatonError('invalid_input', 'commit.repo is not a git work tree');
  }
  const top = real(topLine) ?? resolve(topLine);
  if (!within(top, root) && !within(root, top)) throw outside();
  // A `.git` file can point at another repository's git dir: its refs and objects would take the
  // commit. Where git writes must lie inside an allowed root too (worktrees: the common dir).
  for (const d of [gitDir, resolve(cwd, commonDir)]) {
    const where = real(d) ?? resolve(d);
    if (roots !== undefined && !roots.some((r) => within(where, r))) throw outside();
  }
  const listed = await git(cwd, ['config', '--list', '--show-scope', '-z'], deadline);
  if (listed.code !== 0) throw new BatonError('invalid_input', "git could not read the repository's config");
  const fields = listed.stdout.split('\0');
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const scope = fields[i]!;
    const entry = fields[i + 1]!;
    const nl = entry.indexOf('\n');
    const key = nl < 0 ? entry : entry.slice(0, nl);
    const value = nl < 0 ? '' : entry.slice(nl + 1);
    if (scope !== 'local' && scope !== 'worktree') continue;
    if (PROGRAM_KEYS.test(key) || (/^core\.fsmonitor$/i.test(key) && !BOOLEAN.test(value))) {
      throw new BatonError(
        'forbidden',
        `the repository's own git config sets ${key.replace(/[^\w.-]/g, '?').slice(0, 100)}, which makes git run a program or move the work tree; Baton does not commit there`,
      );
    }
  }
  const scope = within(top, root) ? top : root;
  // The main worktree's top (the common git dir's parent): a linked worktree's paths are the
  // same relative paths there, which is where the project's lock namespace is rooted.
  const common = real(resolve(cwd, commonDir)) ?? resolve(cwd, commonDir);
  const mainTop = basename(common) === '.git' ? dirname(common) : top;
  for (const p of req.paths ?? []) {
    // The leaf may be a symlink: git stages the link itself, never its target. Its directory must
    // really lie inside the bounds (git refuses a path beyond a symlink too; this says so first).
    if (!within(realOfNearest(dirname(resolve(cwd, p))), scope)) {
      throw new BatonError('forbidden', 'commit.paths: a path leads outside the repository (through a symlink)');
    }
  }
  return { cwd, top, root: mainTop };
}

/** What a checkpoint staged: where git runs, the work tree's top, the staged paths (relative to the top). */
export interface Staged {
  readonly cwd: string;
  readonly top: string;
  /** The main worktree's top (equal to `top` outside a linked worktree): where `paths` are rooted for locks. */
  readonly root: string;
  readonly paths: readonly string[];
}

/**
 * Checks the repository (see checkRepo), stages `paths`, and lists everything staged (what a
 * commit would take, whoever staged it); null when nothing is staged. `deadline`: epoch ms.
 */
export async function stageForAgent(req: CommitRequest, deadline: number): Promise<Staged | null> {
  const { cwd, top, root } = await checkRepo(req, deadline);
  const paths = req.paths ?? [];
  if (paths.length > 0) {
    const added = await git(cwd, ['add', '--', ...paths], deadline);
    if (added.code !== 0) throw new BatonError('invalid_input', 'git add failed (does every path exist?)');
  }
  const staged = await git(cwd, ['diff', '--cached', '--name-only', '--no-renames', '-z', '--no-ext-diff', '--no-textconv'], deadline);
  if (staged.code !== 0) throw new BatonError('conflict', 'git could not read the index');
  const list = staged.stdout.split('\0').filter((p) => p !== '');
  return list.length === 0 ? null : { cwd, top, root, paths: list };
}

/** Commits what is staged with the user's identity; the new HEAD sha. */
export async function commitStaged(cwd: string, message: string, deadline: number): Promise<string> {
  const committed = await git(cwd, ['commit', '--no-verify', '--no-gpg-sign', '-m', message], deadline);
  if (committed.code !== 0) {
    throw new BatonError('conflict', 'git commit was refused (is a git identity configured?)');
  }
  const head = await git(cwd, ['rev-parse', 'HEAD'], deadline);
  const sha = head.stdout.trim();
  if (head.code !== 0 || !/^[0-9a-f]{40,64}$/.test(sha)) throw new BatonError('conflict', 'git did not report the new commit');
  return sha;
}

/** Stages `paths`, commits what is staged with the user's identity; the new HEAD sha, or null when nothing was staged. */
export async function commitForAgent(req: CommitRequest): Promise<string | null> {
  const deadline = Date.now() + (req.timeoutMs ?? GIT_TIMEOUT_MS);
  const staged = await stageForAgent(req, deadline);
  return staged === null ? null : commitStaged(staged.cwd, req.message, deadline);
}

/** The project directory: the one that holds the data dir (where `.baton` usually lives). */
export function projectDir(config: { dataDir: string }): string {
  return dirname(resolve(config.dataDir));
}

/** Where checkpoint commits may go: the configured roots, or else only the project directory. */
export function allowedRepos(config: { dataDir: string; gitRepos: readonly string[] }): string[] {
  return config.gitRepos.length > 0 ? config.gitRepos.map((r) => resolve(r)) : [projectDir(config)];
}
