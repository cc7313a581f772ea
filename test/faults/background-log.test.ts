/**
 * The sweeper under a storage fault: its every-second tick fails while the store refuses writes.
 * The store reports the fault itself (once, then every 10 s); the tick's own failures must not
 * add an error with a stack trace every second (seen: "lease sweep failed" each tick on a
 * read-only database).
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Hub } from '../../src/hub.js';
import { tempDir, testConfig } from '../helpers.js';

describe('background jobs under a storage fault', () => {
  it('a sweeper tick refused by a store fault is not logged as an error each tick (the store reports the fault)', async () => {
    const tmp = tempDir();
    const lines: { level: number; msg: string; code?: string }[] = [];
    const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
    const hub = await Hub.open(testConfig(join(tmp.dir, 'data'), { sweepIntervalMs: 50 } as never), { log, sweeper: true });
    try {
      hub.db.block({ code: 'storage_readonly', message: 'test: read-only', at: Date.now() });
      await new Promise((r) => setTimeout(r, 400)); // several ticks
      const sweeps = lines.filter((l) => l.msg === 'lease sweep failed');
      expect(sweeps.length).toBeGreaterThan(2); // the ticks did fail
      expect(sweeps.filter((l) => l.level >= 50)).toEqual([]); // none as an error
      expect(sweeps.every((l) => l.code === 'storage_readonly')).toBe(true);
      hub.db.block(null);
    } finally {
      await hub.close();
      tmp.cleanup();
    }
  });
});
