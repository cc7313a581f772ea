/**
 * The cross-process doorbell follows new events, not any commit: another connection's audit
 * commits (the deferred-audit worker's, every 50 ms under load) must not wake a waiter; its
 * events must. Two real connections to one SQLite file, as `baton serve` has.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Bus } from '../../src/events/bus.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { SqliteDb } from '../../src/store/sqlite.js';
import { appendAudits, appendEvent, type AuditEntry } from '../../src/store/journal.js';
import { auditEntry, tempDir } from '../helpers.js';

const key = Buffer.alloc(32, 7);
const entry = (): AuditEntry => auditEntry({ transport: 'http' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('bus: cross-process doorbell', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function open(): Promise<{ main: SqliteDb; other: SqliteDb; bus: Bus }> {
    const tmp = tempDir();
    const file = join(tmp.dir, 'baton.db');
    const main = new SqliteDb(file, { pollMs: 10 });
    await main.migrate(MIGRATIONS, Date.now());
    const other = new SqliteDb(file);
    const bus = new Bus(main);
    cleanups.push(tmp.cleanup, () => main.close(), () => other.close(), () => bus.close());
    return { main, other, bus };
  }

  it('does not ring on audit-only commits of another connection, and rings once for its event', async () => {
    const { other, bus } = await open();
    const m0 = await bus.mark();
    let eventWritten = false;
    const writer = (async () => {
      // ~100 audit commits while the waiter waits (each moves data_version on the main connection).
      for (let i = 0; i < 100; i++) {
        await other.write((ex) => appendAudits(ex, [entry()], key));
        await sleep(5);
      }
      eventWritten = true;
      await other.write((ex) => appendEvent(ex, 'prj_x', 'task.created', 'tsk_1', null, null, Date.now()));
    })();
    await bus.wait(20_000, undefined, m0);
    expect(eventWritten).toBe(true);
    await writer;
    expect((await bus.mark()).rings - m0.rings).toBe(1);
  });

  it('a new event committed elsewhere between the mark and the wait ends the wait at once', async () => {
    const { other, bus } = await open();
    const m0 = await bus.mark();
    await other.write((ex) => appendAudits(ex, [entry()], key));
    await other.write((ex) => appendEvent(ex, 'prj_x', 'task.created', 'tsk_1', null, null, Date.now()));
    // Longer than the test's own timeout: a wait the event does not end fails the test.
    await bus.wait(120_000, undefined, m0);
    // An audit-only commit after a mark does not end the wait before its timeout.
    const m1 = await bus.mark();
    await other.write((ex) => appendAudits(ex, [entry()], key));
    let early = true;
    const t = bus.wait(300, undefined, m1);
    void sleep(150).then(() => (early = false));
    await t;
    expect(early).toBe(false);
    // And nothing rang the bell meanwhile (a wrong wake after 150 ms would have).
    expect((await bus.mark()).rings).toBe(m1.rings);
  });
  it('a caller that leaves while the wait reads the events head does not wait out its timeout', async () => {
    const { main, bus } = await open();
    const mark = await bus.mark();
    // The next read (the wait's own head check) is held until the caller has left.
    const ac = new AbortController();
    const read = main.read.bind(main);
    main.read = <T>(fn: Parameters<SqliteDb['read']>[0]): Promise<T> =>
      new Promise<void>((r) => setTimeout(r, 50)).then(() => {
        main.read = read;
        return read(fn) as Promise<T>;
      });
    setTimeout(() => ac.abort(), 10);
    const started = Date.now();
    await bus.wait(30_000, ac.signal, mark);
    // Bounded far above the ~50 ms it takes, not a timing goal: without the re-check it waits 30 s.
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 25_000);
});
