/**
 * The doorbell in a `baton serve` setup (dist/: `npm run build` first; the audit worker runs only
 * from the built package): an idle `task_claim` waiting 3 s beside clients reading in a loop
 * (whose audit rows the worker commits every 50 ms) runs its 1 s re-check rounds only. Ringing
 * on every commit ran it 35-38 times.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Hub as HubT } from '../../src/hub.js';
import type { startHttp as StartHttpT } from '../../src/api/http/server.js';
import { tempDir, testConfig } from '../helpers.js';

const dist = join(import.meta.dirname, '../../dist');
const { Hub } = (await import(join(dist, 'hub.js'))) as { Hub: typeof HubT };
const { startHttp } = (await import(join(dist, 'api/http/server.js'))) as { startHttp: typeof StartHttpT };

describe('doorbell under audit-heavy traffic', () => {
  it('an idle waiting claim is not re-run by the audit worker commits', async () => {
    const tmp = tempDir();
    const hub = await Hub.open(testConfig(join(tmp.dir, 'data'), { rateLimit: false }), {
      log: pino({ level: 'silent' }),
      deferredWorker: true,
    });
    const http = await startHttp(hub, { host: '127.0.0.1', port: 0 });
    try {
      const h = { authorization: `Bearer ${hub.firstStartKey!}`, 'content-type': 'application/json' };
      let rounds = 0;
      const wait = hub.bus.wait.bind(hub.bus);
      hub.bus.wait = (...args: Parameters<typeof wait>) => {
        rounds++;
        return wait(...args);
      };
      let stop = false;
      let reads = 0;
      const readers = Array.from({ length: 8 }, async () => {
        while (!stop) {
          await fetch(`${http.url}/api/v1/tasks`, { headers: h }).then((r) => r.arrayBuffer());
          reads++;
        }
      });
      const claim = await fetch(`${http.url}/api/v1/tasks/claim`, { method: 'POST', headers: h, body: JSON.stringify({ wait_ms: 3000 }) });
      stop = true;
      await Promise.all(readers);
      expect(await claim.json()).toEqual({ task: null });
      expect(reads).toBeGreaterThan(50); // the audit worker had commits to make meanwhile
      expect(hub.deferredHealth().restarts).toBe(0);
      // One round per second of the wait (the runner's re-check), plus slack for a slow machine.
      expect(rounds).toBeLessThanOrEqual(6);
      expect(rounds, 'the waiting claim went through the bus at all').toBeGreaterThanOrEqual(1);
    } finally {
      await http.close();
      await hub.close();
      tmp.cleanup();
    }
  });
});
