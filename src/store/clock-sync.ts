import type { Clock } from '../core/clock.js';
import type { ClockSample } from '../core/synced-clock.js';
import type { Db } from './db.js';

/** Round trips per sync: the shortest is used (a round trip slowed on one leg is skipped). */
export const CLOCK_SAMPLES = 5;

/**
 * Reads the database server's clock `samples` times in one read transaction, each query timed
 * on its own with this process's clocks (core/synced-clock.ts). Null when the store has no
 * clock of its own (SQLite: a file on this machine).
 */
export async function sampleServerClock(db: Db, local: Clock, samples = CLOCK_SAMPLES): Promise<ClockSample[] | null> {
  return db.read(async (ex) => {
    const q = ex.dialect.serverClock;
    if (q === null) return null;
    const out: ClockSample[] = [];
    for (let i = 0; i < samples; i++) {
      const sentWall = local.now();
      const sentMono = local.monotonic();
      const row = await ex.get<{ ms: number | string }>(q);
      const receivedMono = local.monotonic();
      const serverMs = Number(row?.ms);
      if (Number.isFinite(serverMs)) out.push({ sentMono, receivedMono, sentWall, serverMs });
    }
    return out;
  });
}
