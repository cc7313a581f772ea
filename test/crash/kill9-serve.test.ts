/**
 * kill -9 of `baton serve` during claim and complete storms. Agents over REST and over MCP (the
 * lean JSON-RPC path) claim and complete; the server is SIGKILLed at seeded random moments and
 * restarted on the same data dir (a new port; agents follow it); leases of the killed run expire
 * (2 s) and their tasks are claimed again. After the last kill the agents drain the board. Then
 * every task is done exactly once, every acknowledged claim and completion is on disk, no
 * dependency order was broken, the file is intact and the audit chain verifies.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkInvariants,
  creator,
  crashRng,
  httpClient,
  kill9,
  Ledger,
  notDone,
  openDb,
  prepare,
  sleep,
  startServe,
  storm,
  until,
  type Prepared,
  type Served,
} from './harness.js';

const TASKS = 500;
const AGENTS = 6;
const KILLS = 6;

describe('kill -9 of baton serve', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it(`${TASKS} tasks, ${AGENTS} agents over REST and MCP, a lead adding work, ${KILLS} kills: nothing lost, nothing done twice`, async () => {
    const r = crashRng('serve');
    const names = Array.from({ length: AGENTS }, (_, i) => `agent${i + 1}`);
    const p: Prepared = await prepare(r, names, TASKS);
    cleanups.push(() => p.cleanup());
    let served: Served = await startServe(p.data);
    cleanups.push(() => kill9(served.child));
    const ledger = new Ledger();
    let stopped = false;
    const clients = names.map((n, i) => httpClient(i % 2 === 0 ? 'rest' : 'mcp', () => served.url, p.keys.get(n)!));
    const agents = names.map((n, i) => storm(n, () => clients[i]!, ledger, r.fork(i + 1), () => stopped));
    // A lead adds work during the storm, until the last kill.
    let creating = true;
    const leadClient = httpClient('mcp', () => served.url, p.lead);
    clients.push(leadClient);
    const lead = creator(() => leadClient, ledger, r.fork(100), p.taskIds, () => !creating);

    const killer = r.fork(0);
    let kills = 0;
    let longRestarts = 0;
    try {
      for (; kills < KILLS; kills++) {
        // Let work be acknowledged, then kill at a random point of the storm.
        const before = ledger.completions.length;
        await until(() => ledger.completions.length > before, 20_000, () => `a completion before kill ${kills + 1} (${JSON.stringify({ claims: ledger.claims.length, gone: ledger.gone, refused: Object.fromEntries(ledger.refused) })}; server log: ${served.stderr().slice(-2000)})`);
        if (kills % 2 === 0) await sleep(killer.int(10, 400));
        else {
          // Aimed at a task_create in flight: its answer may be lost after its commit, and the
          // lead's retry must get the same tasks back (idempotency keys), not new ones.
          await until(() => ledger.creating, 10_000, 'a task_create in flight');
          await sleep(killer.int(0, 4));
        }
        await kill9(served.child);
        // Mostly a quick restart (leases still live: held tasks are completed after it); now and
        // then a long one (they ran out: stale completions are refused, the tasks claimed again).
        const long = kills % 3 === 1;
        if (long) longRestarts++;
        await sleep(long ? killer.int(2100, 2600) : killer.int(0, 300));
        served = await startServe(p.data);
      }
      creating = false;
      await lead;
      // Drain: the agents finish the board (tasks of the killed runs come back as leases expire).
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
      for (const c of clients) c.close();
      await kill9(served.child);
    }

    const v = await checkInvariants(p, ledger, true);
    expect(ledger.completions.length).toBeGreaterThan(0);
    process.stderr.write(
      `[crash serve] seed ${r.seed}: ${v.tasks} tasks (${ledger.created.size} created during the storm), ${kills} kills of serve (${longRestarts} restarts after the leases ran out), ${ledger.claims.length} acknowledged claims ` +
        `(${v.claimEvents} claimed events), ${ledger.completions.length} acknowledged completions, ${ledger.gone} calls cut by a kill, ` +
        `refusals ${JSON.stringify(Object.fromEntries(ledger.refused))}\n`,
    );
  }, 120_000);
});
