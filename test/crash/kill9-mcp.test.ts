/**
 * kill -9 of random `baton mcp` processes: several stdio agents (one process each, one data dir)
 * claim and complete; random ones are SIGKILLed mid-storm, sometimes two at once, and replaced by a
 * new process with the same key (as a client restarting its server would), which retries or
 * forgets the task it held. After the last kill the agents drain the board; then the same
 * invariants as for `baton serve` hold.
 */
import type { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkInvariants,
  creator,
  crashRng,
  exited,
  kill9,
  Ledger,
  notDone,
  openDb,
  prepare,
  sleep,
  stdioMcp,
  storm,
  until,
  type StdioMcp,
} from './harness.js';

const TASKS = 300;
const AGENTS = 5;
const KILLS = 16;

describe('kill -9 of baton mcp processes', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it(`${TASKS} tasks, ${AGENTS} stdio agents and a lead adding work, ${KILLS} kills of random processes: nothing lost, nothing done twice`, async () => {
    const r = crashRng('mcp');
    const names = Array.from({ length: AGENTS }, (_, i) => `agent${i + 1}`);
    const p = await prepare(r, names, TASKS);
    cleanups.push(() => p.cleanup());
    const children: ChildProcess[] = [];
    cleanups.push(async () => {
      for (const c of children) await kill9(c);
    });

    // One process per agent, and one for a lead that adds work until the last kill (killed too).
    const slots: (StdioMcp | null)[] = [...names, 'lead'].map(() => null);
    let starts = 0;
    const clientOf = (i: number) => async (): Promise<StdioMcp> => {
      const current = slots[i] ?? null;
      if (current !== null && current.child.exitCode === null && current.child.signalCode === null) return current;
      slots[i] = null;
      starts++;
      const next = await stdioMcp(p.data, i < AGENTS ? p.keys.get(names[i]!)! : p.lead);
      children.push(next.child);
      slots[i] = next;
      return next;
    };
    const ledger = new Ledger();
    let stopped = false;
    const agents = names.map((n, i) => storm(n, clientOf(i), ledger, r.fork(i + 1), () => stopped));
    let creating = true;
    const lead = creator(clientOf(AGENTS), ledger, r.fork(100), p.taskIds, () => !creating);

    const killer = r.fork(0);
    let kills = 0;
    try {
      while (kills < KILLS) {
        const before = ledger.completions.length;
        await until(() => ledger.completions.length > before, 30_000, () => `a completion before kill ${kills + 1}`);
        await sleep(killer.int(10, 600));
        const victims = new Set([killer.int(0, AGENTS)]);
        if (killer() < 0.3) victims.add(killer.int(0, AGENTS));
        for (const v of victims) {
          const proc = slots[v];
          if (proc === null || proc === undefined) continue;
          await kill9(proc.child);
          kills++;
        }
      }
      creating = false;
      await lead;
      const db = await openDb(p.data);
      try {
        await until(async () => (await notDone(db)) === 0, 60_000, 'every task done');
      } finally {
        await db.close();
      }
    } finally {
      creating = false;
      stopped = true;
      await Promise.all([...agents, lead]);
      // The survivors stop as a client would stop them: stdin closed, then they drain and exit.
      for (const s of slots) s?.close();
      await Promise.all(slots.map((s) => (s === null ? undefined : exited(s.child))));
    }

    const v = await checkInvariants(p, ledger, true);
    expect(ledger.completions.length).toBeGreaterThan(0);
    process.stderr.write(
      `[crash mcp] seed ${r.seed}: ${v.tasks} tasks (${ledger.created.size} created during the storm), ${kills} kills of baton mcp, ${starts} processes started, ${ledger.claims.length} acknowledged claims ` +
        `(${v.claimEvents} claimed events), ${ledger.completions.length} acknowledged completions, ${ledger.gone} calls cut by a kill, ` +
        `refusals ${JSON.stringify(Object.fromEntries(ledger.refused))}\n`,
    );
  }, 120_000);
});
