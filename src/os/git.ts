import { execFile } from 'node:child_process';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { BatonError } from '../core/errors.js';

/**
 * The git commit a checkpoint may make for an agent (S34). Rules, each load-bearing:
 * - `execFile` with an argument array, never a shell: nothing in a message or path is interpreted.
 * - The message is one argument after `-m`; paths come after `--`, with literal pathspecs, so a
 *   path can be neither an option (`--all`) nor pathspec magic (`:(top)`, `*`).
 * - No `--author`, no `-c user.*`: the commit carries the user's own configured git identity.
 * - Hooks run (a pre-commit lock guard must be able to refuse). Every call is bounded by a timeout.
 * - Only what is staged is committed; nothing staged → no commit, sha null.
 */
export interface CommitRequest {
  /** Absolute path of a directory inside a git work tree, or '.' for the hub's working directory. */
  readonly repo: string;
  readonly message: string;
  /** Project-relative paths to stage first (already normalised by the caller). */
  readonly paths?: readonly string[];
  readonly timeoutMs?: number;
  /** What '.' means (default: the process's working directory). */
  readonly base?: string;
  /** Repository roots commits are allowed in (resolved absolute paths); absent: anywhere (tests). */
  readonly allowed?: readonly string[];
}

export const GIT_TIMEOUT_MS = 30_000;

interface Run {
  code: number;
  stdout: string;
}

function git(cwd: string, args: readonly string[], timeoutMs: number): Promise<Run> {
  return new Promise((done, fail) => {
    execFile(
      'git',
      ['-C', cwd, '--literal-pathspecs', ...args],
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 1024 * 1024,
        windowsHide: true,
        // Never wait for a credential or editor prompt; identity still comes from the user's config.
        env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_EDITOR: 'true' },
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

/** Stages `paths`, commits what is staged with the user's identity; the new HEAD sha, or null when nothing was staged. */
export async function commitForAgent(req: CommitRequest): Promise<string | null> {
  const timeout = req.timeoutMs ?? GIT_TIMEOUT_MS;
  const repo = resolveRepo(req.repo, req.base);
  if (req.allowed !== undefined && !req.allowed.some((root) => repo === root || repo.startsWith(root.endsWith(sep) ? root : root + sep))) {
    throw new BatonError('forbidden', 'commit.repo is outside the repositories Baton may commit in (gitRepos)');
  }
  const inside = await git(repo, ['rev-parse', '--is-inside-work-tree'], timeout);
  if (inside.code !== 0 || inside.stdout.trim() !== 'true') {
    throw new BatonError('invalid_input', 'commit.repo is not a git work tree');
  }
  const paths = req.paths ?? [];
  if (paths.length > 0) {
    const added = await git(repo, ['add', '--', ...paths], timeout);
    if (added.code !== 0) throw new BatonError('invalid_input', 'git add failed (does every path exist?)');
  }
  const staged = await git(repo, ['diff', '--cached', '--quiet'], timeout);
  if (staged.code === 0) return null;
  if (staged.code !== 1) throw new BatonError('conflict', 'git could not read the index');
  const committed = await git(repo, ['commit', '-m', req.message], timeout);
  if (committed.code !== 0) {
    throw new BatonError('conflict', 'git commit was refused (a hook refused it, or no git identity is configured)');
  }
  const head = await git(repo, ['rev-parse', 'HEAD'], timeout);
  const sha = head.stdout.trim();
  if (head.code !== 0 || !/^[0-9a-f]{40,64}$/.test(sha)) throw new BatonError('conflict', 'git did not report the new commit');
  return sha;
}

/** The project directory: the one that holds the data dir (where `.baton` usually lives). */
export function projectDir(config: { dataDir: string }): string {
  return dirname(resolve(config.dataDir));
}

/** Where checkpoint commits may go: the configured roots, or else only the project directory. */
export function allowedRepos(config: { dataDir: string; gitRepos: readonly string[] }): string[] {
  return config.gitRepos.length > 0 ? config.gitRepos.map((r) => resolve(r)) : [projectDir(config)];
}
