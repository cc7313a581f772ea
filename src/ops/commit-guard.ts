import { realpathSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { BatonError, conflict } from '../core/errors.js';
import { globCovers } from '../core/globs.js';
import type { Staged } from '../os/git.js';
import { projectDir } from '../os/git.js';
import { liveLocks, type Lock } from '../store/locks.js';
import type { OpContext } from './catalog.js';

/** Path × lock-pattern checks one checkpoint commit may cost (it runs inside a write transaction). */
const MAX_CHECKS = 200_000;

/**
 * What `baton guard`'s pre-commit hook does for a person's commit, done by the hub for a
 * checkpoint commit (which runs no hook): a staged path inside the project that another agent's
 * live lock covers refuses the commit, naming the path and the holder. Paths outside the project
 * directory are not lockable and pass. The caller's own locks never refuse.
 */
export async function refuseLockedStaged(ctx: OpContext, staged: Staged): Promise<void> {
  let base: string;
  try {
    base = realpathSync(projectDir(ctx.services.config));
  } catch {
    return; // no project directory on disk: nothing in it can be staged
  }
  const inProject: string[] = [];
  for (const p of staged.paths) {
    // From the main worktree's top: a commit in a linked worktree (even one inside the project
    // directory, e.g. .worktrees/x) is checked against the same lock paths as the main one.
    const rel = relative(base, join(staged.root, p));
    if (rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel)) inProject.push(rel.split(sep).join('/'));
  }
  if (inProject.length === 0) return;
  const me = ctx.principal.agentId;
  let after: { createdAt: number; id: string } | undefined;
  let checks = 0;
  for (;;) {
    const page: Lock[] = await liveLocks(ctx.tx, { projectId: ctx.principal.projectId, now: ctx.now, after, limit: 200 });
    for (const lock of page) {
      if (lock.agentId === me) continue;
      checks += lock.paths.length * inProject.length;
      if (checks > MAX_CHECKS) {
        throw new BatonError('too_complex', 'too many staged paths against live locks to check this commit; commit fewer paths');
      }
      for (const path of inProject) {
        if (lock.paths.some((pattern) => globCovers(pattern, path))) {
          throw conflict(`commit refused: staged path ${path} is locked by ${lock.agentName} (${lock.mode}); it stays staged`, {
            path,
            holder: lock.agentName,
            lock_id: lock.id,
          });
        }
      }
    }
    if (page.length < 200) return;
    const last = page[page.length - 1]!;
    after = { createdAt: last.createdAt, id: last.id };
  }
}
