/**
 * `baton serve` writes the audit rows of reads on a worker thread (its own connection). Every
 * call is audited, the chain verifies, and a clean shutdown (SIGTERM) loses no row.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sql } from '../../src/store/sql.js';
import { pino } from 'pino';
import { Hub } from '../../src/hub.js';
import { BIN, createKey, openHub, storeEnvOf, testConfig } from '../helpers.js';

describe('baton serve: deferred audit on a worker thread', () => {
  it('audits every read, keeps one verifiable chain with the main connection, and flushes on SIGTERM', async () => {
    const t = await openHub();
    const data = join(t.dir, 'data');
    const key = await createKey(t, 'reader', 'lead');
    await t.hub.close();
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data', data], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, BATON_RATE_LIMIT: 'false', ...storeEnvOf(data) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stderr!.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
        if (m) resolve(m[1]!);
      });
      child.once('exit', () => reject(new Error(buf)));
    });
    const call = (name: string, args: Record<string, unknown>) =>
      fetch(`${url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
      }).then((r) => r.json() as Promise<{ result: { isError?: boolean } }>);
    // Reads (audited by the worker) interleaved with writes (audited in their own transactions
    // on the main connection): one chain.
    for (let i = 0; i < 20; i++) {
      await Promise.all(Array.from({ length: 10 }, () => call('plan_get', {})));
      expect((await call('plan_update', { body: `v${i}` })).result.isError).toBeUndefined();
    }
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);

    const again = await Hub.open(testConfig(data), { log: pino({ level: 'silent' }) });
    try {
      const counts = await again.db.read((ex) =>
        ex.all<{ op: string; n: number }>(sql`SELECT op, count(*) AS n FROM audit WHERE op IN ('plan_get', 'plan_update') GROUP BY op ORDER BY op`),
      );
      expect(counts).toEqual([
        { op: 'plan_get', n: 200 },
        { op: 'plan_update', n: 20 },
      ]);
      const operator = await again.localPrincipal('operator', 'admin');
      expect(await again.call('audit_verify', {}, operator, { requestId: 'r', transport: 'cli' })).toMatchObject({ ok: true });
    } finally {
      await again.close();
    }
  });
});
