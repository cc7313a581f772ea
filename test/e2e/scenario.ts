import { expect } from 'vitest';
import type { Hub } from '../../src/hub.js';
import { sql } from '../../src/store/sql.js';
import type { Agent } from '../helpers.js';

/** A deterministic dependency graph: task i depends on up to 3 earlier tasks. */
export function dagSpec(n: number, seed = 42): { ref: string; title: string; priority: number; depends_on: string[] }[] {
  let s = seed;
  const rand = (): number => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
  return Array.from({ length: n }, (_, i) => {
    const deps = new Set<string>();
    if (i > 0) {
      const k = Math.floor(rand() * 4);
      for (let j = 0; j < k; j++) deps.add(`t${Math.floor(rand() * i)}`);
    }
    return { ref: `t${i}`, title: `task ${i}`, priority: 1 + Math.floor(rand() * 10), depends_on: [...deps] };
  });
}

/** Workers claim, start and complete until every task is done. Returns completions per worker. */
export async function runWorkers(workers: Agent[], total: number): Promise<number[]> {
  let done = 0;
  const counts = workers.map(() => 0);
  await Promise.all(
    workers.map(async (w, i) => {
      while (done < total) {
        const { task } = await w.ok<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {
          wait_ms: 500,
        });
        if (task === null) continue;
        await w.ok('task_start', { id: task.id, lease_token: task.lease.token });
        await w.ok('task_complete', {
          id: task.id,
          lease_token: task.lease.token,
          result: { summary: `done by worker ${i}`, files_modified: [`src/${task.id}.ts`] },
        });
        counts[i]!++;
        done++;
      }
    }),
  );
  return counts;
}

/**
 * The board after a run: every task done exactly once (one claim, one completion), and no task
 * claimed before every one of its dependencies was done — read from the events spine.
 */
export async function assertBoardIntegrity(hub: Hub, ids: readonly string[]): Promise<void> {
  const rows = await hub.db.read((ex) =>
    ex.all<{ id: string; status: string; attempts: number }>(sql`SELECT id, status, attempts FROM tasks`),
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const id of ids) {
    expect(byId.get(id)?.status, id).toBe('done');
    expect(byId.get(id)?.attempts, id).toBe(1);
  }
  const events = await hub.db.read((ex) =>
    ex.all<{ id: number; type: string; subject: string }>(
      sql`SELECT id, type, subject FROM events WHERE type IN ('task.claimed', 'task.done') ORDER BY id`,
    ),
  );
  const claimed = new Map<string, number[]>();
  const doneAt = new Map<string, number[]>();
  for (const e of events) {
    const m = e.type === 'task.claimed' ? claimed : doneAt;
    m.set(e.subject, [...(m.get(e.subject) ?? []), e.id]);
  }
  const deps = await hub.db.read((ex) =>
    ex.all<{ task_id: string; depends_on: string }>(sql`SELECT task_id, depends_on FROM task_deps`),
  );
  for (const id of ids) {
    expect(claimed.get(id), `claims of ${id}`).toHaveLength(1);
    expect(doneAt.get(id), `completions of ${id}`).toHaveLength(1);
  }
  for (const d of deps) {
    expect(claimed.get(d.task_id)![0]!, `${d.task_id} claimed after ${d.depends_on} done`).toBeGreaterThan(
      doneAt.get(d.depends_on)![0]!,
    );
  }
}
