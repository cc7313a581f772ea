/**
 * The cross-instance doorbell on PostgreSQL: event ids come from a sequence while projects commit
 * in parallel, so a later commit can carry a lower id than the newest one. A waiter must still
 * wake (the events head does not move then; each event's NOTIFY does). Two real stores on one
 * schema, as two hub instances have; ids set explicitly to stage the out-of-order commit.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../../src/events/bus.js';
import type { Db } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openStore } from '../../src/store/open.js';
import { sql } from '../../src/store/sql.js';
import { pgSchema, woken } from '../helpers.js';

describe('bus on PostgreSQL: events committed out of id order', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  const event = (db: Db, id: number): Promise<void> =>
    db.write(async (ex) => {
      await ex.run(sql`INSERT INTO events (id, project_id, type, subject, actor, data, created_at, audience)
        VALUES (${id}, ${'prj_x'}, ${'task.created'}, ${null}, ${null}, ${null}, ${Date.now()}, ${'project'})`);
      await ex.announce();
    });

  it('a commit whose event id is below the newest still wakes a waiter on the other instance', async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const open = async (): Promise<Db> => {
      const db = await openStore({ url: s.url, schema: s.schema, file: '' });
      cleanups.push(() => db.close());
      return db;
    };
    const main = await open();
    await main.migrate(MIGRATIONS, Date.now());
    const other = await open();
    const bus = new Bus(main);
    cleanups.push(() => bus.close());
    // The newest id is 1000 (as if a project's later transaction had committed first)…
    await event(other, 1000);
    // …the waiter starts listening (its first round is spent), then waits from a fresh mark.
    await bus.wait(50, undefined, await bus.mark());
    // Its LISTEN connection is up before the commit it must hear of.
    for (let i = 0; i < 200; i++) {
      const up = await main.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = ${`baton:${s.schema}:listen`}`));
      if (up !== undefined && up.n > 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const mark = await bus.mark();
    const waiting = bus.wait(120_000, undefined, mark);
    // A commit of another project whose id (500) is below the head: the head does not move.
    await event(other, 500);
    await woken(waiting, 10_000);
    expect((await bus.mark()).rings).toBeGreaterThan(mark.rings);
  });
});
