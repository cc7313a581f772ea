/**
 * The breaker's rules (store/breaker.ts), on a stand-in store that fails on command: which
 * refusals count, when it opens, that open means refused at once (the store is not called),
 * and that only a probe that answers closes it. The real outage is test/faults/pg-breaker.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { BatonError } from '../../src/core/errors.js';
import { BreakerDb, circuitOf } from '../../src/store/breaker.js';
import type { Db } from '../../src/store/db.js';
import { clientGone } from '../../src/ops/runner.js';
import { busyError, storeFailure } from '../../src/store/faults.js';

function standIn(): { db: Db; calls: () => number; failWith: (e: Error | null) => void } {
  let calls = 0;
  let failure: Error | null = null;
  const run = async <T>(): Promise<T> => {
    calls++;
    if (failure !== null) throw failure;
    return undefined as T;
  };
  const db = {
    profile: { name: 'postgres', eventsInCommitOrder: false },
    read: run,
    write: run,
    subscribe: () => () => undefined,
    migrate: async () => 0,
    fault: () => null,
    block: () => undefined,
    checkIntegrity: async () => ({ ok: true, mode: 'quick', problems: [], at: 0 }),
    lastIntegrity: () => null,
    close: async () => undefined,
  } as unknown as Db;
  return { db, calls: () => calls, failWith: (e) => (failure = e) };
}

const outage = storeFailure('outage', 'unavailable', 'the store cannot be reached; retry shortly');

async function until(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

describe('store circuit breaker (rules)', () => {
  it('opens after the threshold of consecutive outages; contention and other errors never count', async () => {
    const s = standIn();
    const b = new BreakerDb(s.db, { threshold: 3, cooldownMs: 60_000 });
    try {
      s.failWith(busyError());
      for (let i = 0; i < 10; i++) await expect(b.write(async () => 1)).rejects.toThrow(/busy/);
      expect(b.circuit().state).toBe('closed');
      s.failWith(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      // An op's own `unavailable` (its client left mid-wait) is no outage either: the count starts again.
      s.failWith(clientGone());
      for (let i = 0; i < 5; i++) await expect(b.read(async () => 1)).rejects.toThrow(/client went away/);
      expect(b.circuit().state).toBe('closed');
      s.failWith(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      // A different answer in between: the store answered, the count starts again.
      s.failWith(new BatonError('not_found', 'no such task'));
      await expect(b.read(async () => 1)).rejects.toThrow(/no such task/);
      s.failWith(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      expect(b.circuit().state).toBe('closed');
      await expect(b.write(async () => 1)).rejects.toBe(outage);
      expect(b.circuit()).toMatchObject({ state: 'open', reason: outage.message, failures: 3 });
      expect(circuitOf(b)?.state).toBe('open');
      expect(circuitOf(s.db)).toBeNull();

      // Open: refused at once, the store is not called.
      const before = s.calls();
      const refused = await b.write(async () => 1).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(BatonError);
      expect((refused as BatonError).code).toBe('unavailable');
      expect((refused as BatonError).details).toMatchObject({ retry_after_s: 60, circuit: 'open' });
      expect(s.calls()).toBe(before);
    } finally {
      await b.close();
    }
  });

  it('probes on its own while open; a failing probe keeps it open, the first that answers closes it', async () => {
    const s = standIn();
    const changes: string[] = [];
    const b = new BreakerDb(s.db, { threshold: 1, cooldownMs: 20, onChange: (c) => changes.push(c.state) });
    try {
      s.failWith(outage);
      await expect(b.read(async () => 1)).rejects.toBe(outage);
      expect(b.circuit().state).toBe('open');
      const probesBefore = s.calls();
      expect(await until(() => s.calls() >= probesBefore + 2)).toBe(true);
      expect(b.circuit().state).not.toBe('closed');
      s.failWith(null);
      expect(await until(() => b.circuit().state === 'closed')).toBe(true);
      expect(changes).toEqual(['open', 'closed']);
      await expect(b.write(async () => 1)).resolves.toBeUndefined();
    } finally {
      await b.close();
    }
  });
});
