/**
 * Group commit on PostgreSQL (src/store/postgres.ts runBatch): the round trips a batch saves
 * must not cost correctness. A lock taken inside an op's SAVEPOINT is released when that op
 * fails and its savepoint is rolled back (PostgreSQL's rule, advisory locks too), so the next op
 * of the batch must take it again; a NOTIFY goes out with COMMIT only for ops that were kept.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../src/auth/keys.js';
import { BatonError } from '../../src/core/errors.js';
import type { Executor, WriteOptions } from '../../src/store/db.js';
import { PostgresDb, projectLockKey } from '../../src/store/postgres.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, openHub, pgSchema, type TestHub } from '../helpers.js';

describe('PostgreSQL group commit', () => {
  const s = pgSchema();
  let db: PostgresDb;
  let outside: pg.Client;

  beforeAll(async () => {
    db = await PostgresDb.open({ url: s.url, schema: s.schema, poolSize: 4 });
    outside = new pg.Client({ connectionString: s.url });
    await outside.connect();
    await outside.query(`CREATE TABLE "${s.schema}".sent (id INT PRIMARY KEY, who TEXT NOT NULL)`);
  });
  afterAll(async () => {
    await outside.end();
    await db.close();
    await s.drop();
  });

  const tryLock = async (key: string): Promise<boolean> => {
    const got = await outside.query<{ ok: boolean }>({ text: 'SELECT pg_try_advisory_lock($1) AS ok', values: [key] });
    if (got.rows[0]?.ok === true) await outside.query({ text: 'SELECT pg_advisory_unlock($1)', values: [key] });
    return got.rows[0]?.ok === true;
  };

  /** A session LISTENing on the store's channel; heard(): this schema's notifications so far. */
  const listen = async (): Promise<{ client: pg.Client; heard: () => Promise<string[]> }> => {
    const got: string[] = [];
    const client = new pg.Client({ connectionString: s.url });
    await client.connect();
    client.on('notification', (n) => got.push(n.payload ?? ''));
    await client.query('LISTEN baton_commit');
    return {
      client,
      heard: async () => {
        // Delivery is asynchronous: a round trip on the listener flushes what the server sent.
        await client.query('SELECT 1');
        await new Promise((resolve) => setTimeout(resolve, 100));
        return got.filter((p) => p.startsWith(`${s.schema}:`));
      },
    };
  };

  /**
   * Watches every statement the pg clients of this process send (`seen`: its text and the
   * client's promise of the answer) until the returned function is called.
   */
  const watchQueries = (seen: (text: string, answer: unknown) => void): (() => void) => {
    type Query = (this: pg.Client, q: unknown, ...rest: unknown[]) => unknown;
    const proto = pg.Client.prototype as unknown as { query: Query };
    const original = proto.query;
    proto.query = function (this: pg.Client, q: unknown, ...rest: unknown[]) {
      const out = original.call(this, q, ...rest);
      seen(typeof q === 'string' ? q : (q as { text: string }).text, out);
      return out;
    };
    return () => {
      proto.query = original;
    };
  };

  /** The most statements matching `pattern` awaiting their answers at once (since `reset`). */
  const inFlightOf = (pattern: RegExp): { most(): number; reset(): void; unwatch(): void } => {
    let inFlight = 0;
    let most = 0;
    const unwatch = watchQueries((text, answer) => {
      if (pattern.test(text) && answer instanceof Promise) {
        most = Math.max(most, ++inFlight);
        void answer.finally(() => inFlight--).catch(() => undefined);
      }
    });
    return {
      most: () => most,
      reset: () => {
        most = 0;
      },
      unwatch,
    };
  };

  /**
   * Eight ready tasks and eight workers, each key used once (resolved in its transaction, as over
   * HTTP: the project is known ahead from then on), each worker holding one claimed task.
   */
  const eightClaimed = async (t: TestHub, claims: { reset(): void }) => {
    const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    await call(t.hub, lead, 'task_create', { tasks: Array.from({ length: 8 }, (_, i) => ({ title: `t${i}` })) });
    const keys = await Promise.all(Array.from({ length: 8 }, (_, i) => createKey(t, `w${i}`, 'worker')));
    const meta = { requestId: 'r', transport: 'mcp-http' as const };
    for (const k of keys) await t.hub.call('task_get', { id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa' }, t.hub.resolver(k), meta).catch(() => undefined);
    claims.reset();
    type Claimed = { task: { id: string; lease: { token: number } } };
    const claimed = await Promise.all(keys.map((k) => t.hub.call('task_claim', {}, t.hub.resolver(k), meta) as Promise<Claimed>));
    return { keys, meta, claimed };
  };

  /**
   * One batch of project `project`: an op that fails, then one that waits at a gate. While the
   * second runs, no other session may take the project's lock; afterwards it is free.
   */
  const lockHeldAfterFailure = async (project: string, lock: (ex: Executor) => Promise<void>, options: WriteOptions = {}): Promise<void> => {
    const key = projectLockKey(s.schema, project);
    let inside!: () => void;
    const entered = new Promise<void>((resolve) => (inside = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const failing = db.write(
      async (ex) => {
        await lock(ex);
        throw new BatonError('not_found', 'no such thing');
      },
      'declared',
      project,
      options,
    );
    const holding = db.write(
      async (ex) => {
        await lock(ex);
        // A project's lock is sent ahead, not awaited (postgres.ts lock): a statement queued
        // behind it on the connection answers once the server has taken it. Without this the
        // check below could reach the server first (it did, once, on a loaded machine).
        await ex.get(sql`SELECT 1 AS one`);
        inside();
        await gate;
        return 'ok';
      },
      'declared',
      project,
      options,
    );
    // Nobody is answered before the batch's COMMIT, so the failed op settles after the gate opens.
    await entered;
    // The second op runs: another session must not be able to take the project's lock.
    let free: boolean;
    try {
      free = await tryLock(key);
    } finally {
      release(); // a failed check must not leave the batch (and the store's close) hanging
    }
    expect(free).toBe(false);
    await expect(failing).rejects.toMatchObject({ code: 'not_found' });
    await expect(holding).resolves.toBe('ok');
    expect(await tryLock(key)).toBe(true);
  };

  it("an op after a failed one in the same batch holds its project's lock again", async () => {
    // Queued in one turn for one project: one batch, one transaction (run again with an op per
    // savepoint once the first fails).
    await lockHeldAfterFailure('p1', (ex) => ex.lock({ project: 'p1' }));
  });

  it('a NOTIFY goes out with COMMIT for a kept op that appended, never for a rolled-back one', async () => {
    const listener = await listen();
    try {
      const rolledBack = db.write(
        async (ex) => {
          await ex.announce();
          throw new BatonError('conflict', 'changed');
        },
        'declared',
        'p2',
      );
      await expect(rolledBack).rejects.toMatchObject({ code: 'conflict' });
      // In one batch: an op that appended and failed (its savepoint rolled back), one that
      // appended nothing and was kept. Then a lone op that appended: the one NOTIFY of the three.
      const batch = await Promise.all([
        db.write(async (ex) => {
          await ex.announce();
          throw new BatonError('conflict', 'changed');
        }, 'declared', 'p2').catch(() => 'failed'),
        db.write(async () => 'kept', 'declared', 'p2'),
      ]);
      expect(batch).toEqual(['failed', 'kept']);
      await db.write(async (ex) => ex.announce().then(() => 'announced'), 'declared', 'p2');
      expect(await listener.heard()).toHaveLength(1);
    } finally {
      await listener.client.end();
    }
  });

  it("writes queued while their project's batch runs wait for it and commit together in one transaction", async () => {
    const listener = await listen();
    try {
      let inside!: () => void;
      const entered = new Promise<void>((resolve) => (inside = resolve));
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const first = db.write(
        async (ex) => {
          await ex.lock({ project: 'p3' });
          await ex.announce();
          inside();
          await gate;
        },
        'declared',
        'p3',
      );
      await entered;
      // Five writes of the same project, each in a turn of its own, while the first batch runs.
      const queued: Promise<void>[] = [];
      for (let i = 0; i < 5; i++) {
        queued.push(db.write(async (ex) => { await ex.lock({ project: 'p3' }); await ex.announce(); }, 'declared', 'p3'));
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      release();
      await Promise.all([first, ...queued]);
      // One NOTIFY per transaction: the first batch's and the one batch of the five.
      expect(await listener.heard()).toHaveLength(2);
    } finally {
      await listener.client.end();
    }
  });

  /** The rows of the test's own table `sent`, by id. */
  const sentRows = async (): Promise<string[]> =>
    (await outside.query<{ who: string }>(`SELECT who FROM "${s.schema}".sent ORDER BY id`)).rows.map((r) => r.who);

  it('a statement sent ahead that fails loses the transaction: every other op of the batch commits alone, the failing one hears its own error', async () => {
    await outside.query(`INSERT INTO "${s.schema}".sent VALUES (1, 'before')`);
    const put = (id: number, who: string) => (ex: Executor) => ex.send(sql`INSERT INTO sent (id, who) VALUES (${id}, ${who})`).then(() => who);
    // One batch (one turn, one project): the middle op's INSERT is refused after its op returned.
    const results = await Promise.allSettled([
      db.write(put(2, 'first'), 'declared', 'p5'),
      db.write(put(1, 'duplicate'), 'declared', 'p5'),
      // This one waits for its answer: PostgreSQL refuses it (the transaction is aborted), which is not its error.
      db.write((ex) => ex.run(sql`INSERT INTO sent (id, who) VALUES (3, 'third')`).then(() => 'third'), 'declared', 'p5'),
    ]);
    expect(results[0]).toEqual({ status: 'fulfilled', value: 'first' });
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: 'conflict' } });
    expect(results[2]).toEqual({ status: 'fulfilled', value: 'third' });
    expect(await sentRows()).toEqual(['before', 'first', 'third']);
    // The last op's failure is heard only with COMMIT (which PostgreSQL then turns into a rollback).
    const last = await Promise.allSettled([db.write(put(4, 'fourth'), 'declared', 'p5'), db.write(put(1, 'again'), 'declared', 'p5')]);
    expect(last[0]).toEqual({ status: 'fulfilled', value: 'fourth' });
    expect(last[1]).toMatchObject({ status: 'rejected', reason: { code: 'conflict' } });
    // Alone: its own transaction, no savepoint.
    await expect(db.write(put(1, 'alone'), 'declared', 'p5')).rejects.toMatchObject({ code: 'conflict' });
    expect(await sentRows()).toEqual(['before', 'first', 'third', 'fourth']);
  });

  it('a batch takes no savepoint until an op fails: then it runs again with one per op, and the failed op leaves nothing', async () => {
    const fresh = await PostgresDb.open({ url: s.url, schema: s.schema, poolSize: 2 });
    const savepoints: string[] = [];
    const unwatch = watchQueries((text) => {
      if (/SAVEPOINT/.test(text)) savepoints.push(text);
    });
    try {
      const runs = { a: 0, b: 0, c: 0 };
      const put = (id: number, who: 'a' | 'b' | 'c', fail = false) => async (ex: Executor) => {
        runs[who]++;
        await ex.run(sql`INSERT INTO sent (id, who) VALUES (${id}, ${who})`);
        if (fail) throw new BatonError('conflict', 'changed after writing');
        return who;
      };
      // Every op succeeds: one transaction, no savepoint.
      expect(await Promise.all([fresh.write(put(10, 'a'), 'declared', 'p8'), fresh.write(put(11, 'c'), 'declared', 'p8')])).toEqual(['a', 'c']);
      expect(savepoints).toEqual([]);
      // The middle op fails after its INSERT: rolled back with the batch, which runs again guarded.
      runs.a = runs.c = 0;
      const results = await Promise.allSettled([
        fresh.write(put(12, 'a'), 'declared', 'p8'),
        fresh.write(put(13, 'b', true), 'declared', 'p8'),
        fresh.write(put(14, 'c'), 'declared', 'p8'),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect(results[1]).toMatchObject({ reason: { code: 'conflict' } });
      expect(runs).toEqual({ a: 2, b: 2, c: 1 });
      expect(savepoints.length).toBeGreaterThan(0);
      const rows = (await outside.query<{ id: number; who: string }>(`SELECT id, who FROM "${s.schema}".sent WHERE id >= 10 ORDER BY id`)).rows;
      expect(rows).toEqual([
        { id: 10, who: 'a' },
        { id: 11, who: 'c' },
        { id: 12, who: 'a' },
        { id: 14, who: 'c' },
      ]);
    } finally {
      unwatch();
      await fresh.close();
    }
  });

  it('a call refused inside the transaction (invalid input, found once its caller is known) is refused again when its batch runs again', async () => {
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false } });
    try {
      const key = await createKey(t, 'lead', 'lead');
      const meta = { requestId: 'r', transport: 'mcp-http' as const };
      const run = (input: unknown): Promise<string> =>
        t.hub.call('task_create', input, t.hub.resolver(key), meta).then(
          () => 'ok',
          (err: { code?: string }) => err.code ?? 'thrown',
        );
      // One turn: one batch. The invalid call fails inside it, so the batch runs again with
      // savepoints, and every call's handler runs again: the refused one must not. (Round 2 starts
      // guarded, as the batches after a failure do: its refused call is rolled back alone.)
      for (let round = 0; round < 2; round++) {
        const got = await Promise.all([run({ tasks: [{ title: 'a' }] }), run({ tasks: [{ title: 'x', owner: 'me' }] }), run({ tasks: [{ title: 'b' }] })]);
        expect(got).toEqual(['ok', 'invalid_input', 'ok']);
      }
    } finally {
      await t.close();
    }
  });

  it("a wrong key in a batch that runs again counts once against its address's failure limit", async () => {
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false, authFailuresPerMinute: 2 } });
    try {
      const key = await createKey(t, 'lead', 'lead');
      const wrong = generateKey();
      const meta = { requestId: 'r', transport: 'mcp-http' as const };
      const run = (k: string): Promise<string> =>
        t.hub.call('task_create', { tasks: [{ title: 'a' }] }, t.hub.resolver({ token: k, address: '192.0.2.7' }), meta).then(
          () => 'ok',
          (err: { code?: string }) => err.code ?? 'thrown',
        );
      // Two failures, not three (round 1's batch runs again, round 2 starts guarded): over 2 blocks.
      for (let round = 0; round < 2; round++) {
        expect(await Promise.all([run(key), run(wrong), run(key)])).toEqual(['ok', 'unauthenticated', 'ok']);
      }
      // The third failure starts the block (still answered 401), the fourth is refused.
      expect(await run(wrong)).toBe('unauthenticated');
      expect(await run(wrong)).toBe('rate_limited');
    } finally {
      await t.close();
    }
  });

  it("a lock taken ahead belongs to the transaction: a failed op's rollback to its savepoint does not release it", async () => {
    // The first op fails, so the batch runs again guarded: the reads ahead (the lock) come before
    // the first SAVEPOINT, and the second op runs after the first is rolled back.
    const ahead = (ex: Executor): void => void ex.lock({ project: 'p9' }).catch(() => undefined);
    await lockHeldAfterFailure('p9', async () => undefined, { ahead });
    // A read ahead may start in a microtask (the runner's lock and chain head follow the batch's
    // keys statement): the first SAVEPOINT still comes after it.
    const later = (ex: Executor): void => queueMicrotask(() => void ex.lock({ project: 'p10' }).catch(() => undefined));
    await lockHeldAfterFailure('p10', async () => undefined, { ahead: later });
  });

  it('the claims and completions of one group commit run side by side: their statements go out before the first answer', async () => {
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false, waitRecheckMs: 0 } });
    const statements = inFlightOf(/^\s*(UPDATE tasks SET status = 'claimed'|WITH done AS)/);
    try {
      const { keys, meta, claimed } = await eightClaimed(t, statements);
      expect(new Set(claimed.map((c) => c.task.id)).size).toBe(8);
      expect(statements.most()).toBeGreaterThan(1);
      statements.reset();
      const done = await Promise.all(
        keys.map((k, i) => t.hub.call('task_complete', { id: claimed[i]!.task.id, lease_token: claimed[i]!.task.lease.token, result: { summary: 'ok' } }, t.hub.resolver(k), meta)),
      );
      expect(done).toHaveLength(8);
      expect(statements.most()).toBeGreaterThan(1);
      expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
    } finally {
      statements.unwatch();
      await t.close();
    }
  });

  it('the fails and releases of one group commit run side by side too', async () => {
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false, waitRecheckMs: 0, backoffBaseMs: 0 } });
    // The fenced UPDATEs of task_fail and task_release.
    const statements = inFlightOf(/^\s*UPDATE tasks SET status = (\$\d+, last_error|'ready', attempts = attempts - 1)/);
    try {
      const { keys, meta, claimed } = await eightClaimed(t, statements);
      statements.reset();
      // Half fail (one of them for good), half give their task back: none fails, so the batch
      // commits as it ran, side by side (a failing op would run it again one op at a time).
      const answers = await Promise.all(
        keys.map((k, i) => {
          const { id, lease } = claimed[i]!.task;
          return (
            i < 4
              ? t.hub.call('task_fail', { id, lease_token: lease.token, error: 'boom', ...(i === 0 ? { retry: false } : {}) }, t.hub.resolver(k), meta)
              : t.hub.call('task_release', { id, lease_token: lease.token }, t.hub.resolver(k), meta)
          ) as Promise<{ status: string }>;
        }),
      );
      expect(statements.most()).toBeGreaterThan(1);
      expect(answers.map((a) => a.status)).toEqual(['failed', 'ready', 'ready', 'ready', 'ready', 'ready', 'ready', 'ready']);
      const rows = await t.hub.db.read((ex) =>
        ex.all<{ id: string; status: string; attempts: number; lease_owner: string | null }>(sql`SELECT id, status, attempts, lease_owner FROM tasks`),
      );
      const byId = new Map(rows.map((r) => [r.id, r]));
      const at = (i: number) => byId.get(claimed[i]!.task.id)!;
      expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => [at(i).status, at(i).attempts, at(i).lease_owner === null])).toEqual([
        ['failed', 1, true], ['ready', 1, true], ['ready', 1, true], ['ready', 1, true],
        ['ready', 0, true], ['ready', 0, true], ['ready', 0, true], ['ready', 0, true],
      ]);
      // The next claims take them again (the failed one excepted), fences and all.
      const again = await Promise.all(keys.map((k) => t.hub.call('task_claim', {}, t.hub.resolver(k), meta) as Promise<{ task: { id: string } | null }>));
      expect(again.filter((a) => a.task !== null)).toHaveLength(7);
      expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
    } finally {
      statements.unwatch();
      await t.close();
    }
  });

  it("a lease swept by one claim of a batch is announced before another claim of the batch takes its task", async () => {
    // A test hub runs no periodic sweep: the batch's first claim is the one that sweeps.
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false, waitRecheckMs: 0 } });
    try {
      const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
      const meta = { requestId: 'r', transport: 'mcp-http' as const };
      // x the more urgent, so the claim without an id takes x, never y (ids are random: with equal
      // priorities it took y in half the runs, the other claim failed, and the batch ran again one
      // op at a time, where the order this guards is not at stake).
      const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', {
        tasks: [{ title: 'x', priority: 1 }, { title: 'y', priority: 9 }],
      });
      const [x, y] = tasks.map((k) => k.id) as [string, string];
      const w0 = await t.hub.authenticate(await createKey(t, 'w0', 'worker'));
      await call(t.hub, w0, 'task_claim', { id: x, lease_ms: 1000 });
      const k1 = await createKey(t, 'w1', 'worker');
      const k2 = await createKey(t, 'w2', 'worker');
      for (const k of [k1, k2]) await t.hub.call('task_get', { id: y }, t.hub.resolver(k), meta);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      // One batch, its claims side by side: the first (by id, with a statement more before its
      // own) reaches the sweep first and sweeps x's lease; the second waits for that sweep, takes
      // x and finishes first.
      type Claimed = { task: { id: string } };
      const [one, two] = await Promise.all([
        t.hub.call('task_claim', { id: y, capabilities: ['go'] }, t.hub.resolver(k1), meta) as Promise<Claimed>,
        t.hub.call('task_claim', {}, t.hub.resolver(k2), meta) as Promise<Claimed>,
      ]);
      expect([one.task.id, two.task.id]).toEqual([y, x]);
      const events = await t.hub.db.read((ex) =>
        ex.all<{ type: string; subject: string; actor: string; tx: string }>(
          sql`SELECT type, subject, actor, xmin::text AS tx FROM events WHERE subject IN (${x}, ${y}) AND type <> 'task.created' ORDER BY id`,
        ),
      );
      // The scenario itself, so that this cannot pass without it: one transaction, swept by the
      // claim of y, whose own claim came last.
      const [claimX0, swept, ...rest] = events;
      expect(claimX0).toMatchObject({ type: 'task.claimed', subject: x });
      expect(swept).toMatchObject({ type: 'task.lease_expired', subject: x });
      expect(rest.map((e) => [e.type, e.subject])).toEqual([['task.claimed', x], ['task.claimed', y]]);
      expect(new Set([swept!.tx, ...rest.map((e) => e.tx)]).size).toBe(1);
      expect(swept!.actor).toBe(rest[1]!.actor);
    } finally {
      await t.close();
    }
  });

  it('reads ahead start in the transaction their write runs in, only in a batch formed for its project', async () => {
    const seen: { ahead: unknown; op: unknown }[] = [];
    const write = (project: string | undefined) => {
      const one = { ahead: undefined as unknown, op: undefined as unknown };
      seen.push(one);
      return db.write(
        async (ex) => {
          one.op = ex.memo;
          return (await ex.get<{ n: number }>(sql`SELECT 1 AS n`))?.n;
        },
        'declared',
        project,
        {
          ahead: (ex) => {
            one.ahead = ex.memo;
          },
        },
      );
    };
    expect(await Promise.all([write('p6'), write('p6')])).toEqual([1, 1]);
    expect(seen[0]!.ahead).toBeDefined();
    expect(seen[0]!.ahead).toBe(seen[0]!.op);
    expect(seen[1]!.ahead).toBe(seen[0]!.op);
    // Project not known: the batch may hold a `server` write (a revocation) ahead of it.
    expect(await write(undefined)).toBe(1);
    expect(seen[2]!.ahead).toBeUndefined();
  });

  it("a key's row read ahead serves only the transaction that read it: revoked since, the next one refuses the key", async () => {
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false } });
    try {
      const key = await createKey(t, 'w', 'worker');
      const resolve = t.hub.resolver(key);
      // Read ahead in one write transaction, not used there (its op went elsewhere) …
      await t.hub.db.write(async (ex) => resolve.lookAhead!(ex), 'declared', 'p7');
      const { tokens } = await call<{ tokens: { id: string; name: string }[] }>(t.hub, t.admin, 'token_list', {});
      await call(t.hub, t.admin, 'token_revoke', { id: tokens.find((k) => k.name === 'w')!.id });
      // … a later transaction looks the key up itself.
      await expect(t.hub.db.write(async (ex) => resolve(ex), 'declared', 'p7')).rejects.toMatchObject({ code: 'unauthenticated' });
      // In its own transaction, a read ahead is what the op uses (a live key): no lookup of its own.
      const live = await createKey(t, 'w2', 'worker');
      const again = t.hub.resolver(live);
      const lookups: string[] = [];
      const unwatch = watchQueries((text) => {
        if (/t\.key_hash (IN|=)/.test(text)) lookups.push(/t\.key_hash IN/.test(text) ? 'ahead' : 'own');
      });
      try {
        const p = await t.hub.db.write(async (ex) => {
          again.lookAhead!(ex);
          return again(ex);
        }, 'declared', 'p7');
        expect(p.agentName).toBe('w2');
      } finally {
        unwatch();
      }
      expect(lookups).toEqual(['ahead']);
    } finally {
      await t.close();
    }
  });

  it("a statement prepared before another instance's migration changed its table runs again on a fresh connection", async () => {
    const one = await PostgresDb.open({ url: s.url, schema: s.schema, poolSize: 1 });
    try {
      await outside.query(`CREATE TABLE "${s.schema}".widened (id INT PRIMARY KEY)`);
      await outside.query(`INSERT INTO "${s.schema}".widened VALUES (1)`);
      const readAll = (): Promise<Record<string, unknown>[]> => one.read((ex) => ex.all(sql`SELECT * FROM widened`));
      const writeAll = (): Promise<Record<string, unknown>[]> => one.write((ex) => ex.all(sql`SELECT * FROM widened`), 'declared', 'p4');
      expect(await readAll()).toEqual([{ id: 1 }]);
      expect(await writeAll()).toEqual([{ id: 1 }]);
      // Prepared on the one connection; a migration elsewhere adds a column to what `*` returns.
      await outside.query(`ALTER TABLE "${s.schema}".widened ADD COLUMN note TEXT`);
      expect(await readAll()).toEqual([{ id: 1, note: null }]);
      await outside.query(`ALTER TABLE "${s.schema}".widened ADD COLUMN more TEXT`);
      expect(await writeAll()).toEqual([{ id: 1, note: null, more: null }]);
    } finally {
      await one.close();
    }
  });

  it("claims of one group commit probe their project's expired leases once, and a claim still sweeps an expired lease first", async () => {
    const t = await openHub({ backend: 'postgres', config: { rateLimit: false, waitRecheckMs: 0 } });
    const probes: string[] = [];
    const unwatch = watchQueries((text) => {
      if (/^SELECT 1 AS one FROM tasks WHERE lease_expires_at/.test(text.trim())) probes.push(text);
    });
    try {
      const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
      await call(t.hub, lead, 'task_create', { tasks: Array.from({ length: 8 }, (_, i) => ({ title: `t${i}` })) });
      const workers = await Promise.all(Array.from({ length: 8 }, async (_, i) => t.hub.authenticate(await createKey(t, `w${i}`, 'worker'))));
      probes.length = 0;
      // Eight claims in one turn: one batch, one transaction (the principals' project is known).
      const got = await Promise.all(workers.map((w) => call<{ task: { id: string } | null }>(t.hub, w, 'task_claim', { lease_ms: 1000 })));
      expect(new Set(got.map((g) => g.task?.id)).size).toBe(8);
      expect(probes).toHaveLength(1);
      // A lease that ran out is swept by the next claim, whose task it then hands out.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const again = await call<{ task: { id: string } | null }>(t.hub, workers[0]!, 'task_claim', {});
      expect(got.map((g) => g.task?.id)).toContain(again.task?.id);
    } finally {
      unwatch();
      await t.close();
    }
  });
});
