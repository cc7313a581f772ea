/**
 * PostgreSQL connection faults a probe found answered badly, through a TCP proxy this test runs
 * between the hub and the real server:
 * - a server that stops answering with the socket still open (a frozen host, a dropped path):
 *   a write waited until the server answered again (186 s) and SIGTERM could not stop the hub;
 *   now the client's query_timeout ends it `unavailable`, and closing the hub is bounded;
 * - connections refused with an error at startup (a rotated password, too many clients, a
 *   database not accepting connections): a bare 500 `internal` that never opened the breaker;
 *   now an outage (503 `unavailable`, the breaker counts it), and at start a message that says
 *   why instead of "unexpected error".
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { pino } from 'pino';
import { Hub } from '../../src/hub.js';
import { openHub, pgSchema, runBaton, serve, tempDir, testConfig } from '../helpers.js';

type Mode = 'forward' | 'frozen' | 'refuse';

/** A TCP proxy to the test's PostgreSQL that can freeze (bytes stop, sockets stay) or refuse new connections with a startup error. */
async function proxyTo(url: string): Promise<{ url: string; mode(m: Mode, sqlState?: string): void; dropAll(): void; close(): Promise<void> }> {
  const target = new URL(url);
  let mode: Mode = 'forward';
  let refusal = '28P01';
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    client.on('error', () => undefined);
    if (mode === 'refuse') {
      // Read the startup message, then answer as a server refusing it would: an ErrorResponse, then close.
      client.once('data', () => {
        const fields = [`SFATAL`, `VFATAL`, `C${refusal}`, `Mthe server refused the connection (${refusal})`].map((f) => Buffer.from(`${f}\0`));
        const body = Buffer.concat([...fields, Buffer.from([0])]);
        const head = Buffer.alloc(5);
        head.write('E', 0);
        head.writeInt32BE(body.length + 4, 1);
        client.end(Buffer.concat([head, body]));
      });
      return;
    }
    const upstream = connect(Number(target.port || 5432), target.hostname);
    upstream.on('error', () => undefined);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const relay = (from: Socket, to: Socket): void => {
      from.on('data', (d: Buffer) => {
        if (mode !== 'frozen') to.write(d); // frozen: bytes are swallowed, the sockets stay open
      });
    };
    relay(client, upstream);
    relay(upstream, client);
    const end = (): void => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(port);
  return {
    url: proxied.toString(),
    mode: (m, sqlState) => {
      mode = m;
      if (sqlState !== undefined) refusal = sqlState;
    },
    dropAll: () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    },
    close: async () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('PostgreSQL connection faults (a proxy between the hub and the server)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function hubVia(config: Record<string, unknown> = {}) {
    const s = pgSchema();
    cleanups.push(s.drop);
    const proxy = await proxyTo(s.url);
    cleanups.push(() => proxy.close());
    const t = await openHub({ backend: 'sqlite', config: { databaseUrl: proxy.url, databaseSchema: s.schema, ...config } });
    let closed = false;
    cleanups.push(async () => {
      if (!closed) await t.close();
    });
    const http = await serve(t.hub);
    cleanups.push(() => http.close());
    const auth = { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' };
    const add = (title: string): Promise<Response> => fetch(`${http.url}/api/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ tasks: [{ title }] }) });
    return { t, proxy, add, url: http.url, direct: s.url, schema: s.schema, markClosed: () => (closed = true) };
  }

  it('a server that stops answering: the write ends unavailable (not held until it answers), and the hub closes', { timeout: 90_000 }, async () => {
    const { t, proxy, add, markClosed } = await hubVia({ statementTimeoutMs: 1_000, busyTimeoutMs: 200, breakerThreshold: 0 });
    expect((await add('before')).status).toBe(200);
    proxy.mode('frozen');
    const refused = await add('while frozen');
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unavailable');
    // The hub closes although connections to the frozen server are still open.
    markClosed();
    const closed = await Promise.race([t.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('still closing'), 30_000))]);
    expect(closed).toBe('closed');
  });

  for (const [sqlState, what] of [
    ['28P01', 'a wrong password (rotated)'],
    ['53300', 'too many clients'],
    ['55000', 'a database not accepting connections'],
  ] as const) {
    it(`new connections refused with ${sqlState} (${what}): 503 unavailable, and the breaker opens`, { timeout: 60_000 }, async () => {
      const { add, proxy } = await hubVia({ busyTimeoutMs: 200, breakerThreshold: 3, breakerCooldownMs: 60_000 });
      expect((await add('before')).status).toBe(200);
      proxy.mode('refuse', sqlState);
      proxy.dropAll();
      const answers: { status: number; code: string; circuit: string | undefined; retryAfter: string | null }[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await add(`refused ${i}`);
        const body = (await r.json()) as { error: { code: string; details?: { circuit?: string } } };
        answers.push({ status: r.status, code: body.error.code, circuit: body.error.details?.circuit, retryAfter: r.headers.get('retry-after') });
      }
      for (const a of answers) expect(a).toMatchObject({ status: 503, code: 'unavailable', retryAfter: expect.any(String) });
      // Past the threshold (3) the breaker is open: refused at once.
      expect(answers[4]!.circuit).toBe('open');
    });
  }

  it('a table locked by another session: reads and writes answer unavailable after busyTimeoutMs, not after statement_timeout', { timeout: 60_000 }, async () => {
    // statement_timeout 10 min: only lock_timeout (busyTimeoutMs, per connection) can end these waits within the test.
    const { t, add, url, direct, schema } = await hubVia({ statementTimeoutMs: 600_000, busyTimeoutMs: 300, breakerThreshold: 0 });
    expect((await add('before')).status).toBe(200);
    const { default: pg } = await import('pg');
    const other = new pg.Client({ connectionString: direct });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query(`LOCK TABLE "${schema}".tasks IN ACCESS EXCLUSIVE MODE`);
      const write = await add('while locked');
      expect(write.status).toBe(503);
      expect(((await write.json()) as { error: { code: string } }).error.code).toBe('unavailable');
      const read = await fetch(`${url}/api/v1/tasks`, { headers: { authorization: `Bearer ${t.adminKey}` } });
      expect(read.status).toBe(503);
    } finally {
      await other.query('ROLLBACK').catch(() => undefined);
      await other.end();
    }
    expect((await add('after')).status).toBe(200);
  });

  it('the sweeper during an outage: its failing ticks are not an error each second (the store reports the outage)', { timeout: 60_000 }, async () => {
    const s = pgSchema();
    cleanups.push(s.drop);
    const proxy = await proxyTo(s.url);
    cleanups.push(() => proxy.close());
    const tmp = tempDir('baton-pgsweep-');
    cleanups.push(tmp.cleanup);
    const lines: { level: number; msg: string }[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
    const hub = await Hub.open(testConfig(join(tmp.dir, 'data'), { databaseUrl: proxy.url, databaseSchema: s.schema, sweepIntervalMs: 50, busyTimeoutMs: 50, breakerThreshold: 0 } as never), { log, sweeper: true });
    cleanups.push(() => hub.close());
    proxy.mode('refuse', '57P03');
    proxy.dropAll();
    await new Promise((r) => setTimeout(r, 1_000)); // many ticks
    const sweeps = lines.filter((l) => l.msg === 'lease sweep failed');
    expect(sweeps.length).toBeGreaterThan(2); // the ticks did fail
    expect(sweeps.filter((l) => l.level >= 50)).toEqual([]); // none as an error
    expect(lines.filter((l) => l.msg === 'storage fault').length).toBeLessThanOrEqual(1); // the store's own report, at most every 10 s
  });

  it('at start: a refused connection and a database that does not exist are named, not "unexpected error"', { timeout: 60_000 }, async () => {
    const s = pgSchema();
    const proxy = await proxyTo(s.url);
    cleanups.push(() => proxy.close());
    proxy.mode('refuse', '28P01');
    const tmp = tempDir('baton-pgconn-');
    cleanups.push(tmp.cleanup);
    let r = await runBaton(['migrate', '--data', tmp.dir], { env: { BATON_DATABASE_URL: proxy.url, BATON_DATABASE_SCHEMA: s.schema } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('cannot connect to the database: the server refused the connection (28P01) (28P01)');
    expect(r.stderr).not.toContain('unexpected error');
    const missing = new URL(s.url);
    missing.pathname = '/baton_no_such_database';
    r = await runBaton(['migrate', '--data', tmp.dir], { env: { BATON_DATABASE_URL: missing.toString(), BATON_DATABASE_SCHEMA: s.schema } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot connect to the database: database "baton_no_such_database" does not exist \(3D000\)/);
  });
});
