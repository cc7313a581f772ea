/**
 * The deferred writer's worker thread (see deferred.ts `WorkerSink`): its own SQLite connection
 * to the same file, writing batches of audit rows and touches in write transactions. Hashing and
 * inserting a read's audit row cost about a tenth of the read; here they run beside the request
 * path instead of on it. No chain forks: every writer of audit rows, on any connection, reads a
 * chain's head inside its own BEGIN IMMEDIATE transaction. Each batch's writes mark its key
 * (store/deferred-marks.ts); every 512th batch, marks older than an hour are removed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { DEFERRED_MARK_TTL_MS, pruneDeferredMarks } from '../store/deferred-marks.js';
import type { AuditEntry } from '../store/journal.js';
import { openStore } from '../store/open.js';
import type { Durability } from '../store/sqlite.js';
import { PartialFlush, writeDeferred } from './deferred.js';

interface Batch {
  id: number;
  key: string;
  audit: AuditEntry[];
  agents: Map<string, number>;
  tokens: Map<string, number>;
}

const { file, busyTimeoutMs, auditKey, durability } = workerData as {
  file: string;
  busyTimeoutMs: number;
  auditKey: Uint8Array;
  durability?: Durability;
};
const key = Buffer.from(auditKey);
// Durable unless the hub says otherwise: audit rows are acknowledged writes too.
const db = await openStore({ file, busyTimeoutMs, durability: durability ?? 'full' });

/** Fault injection (WorkerSink.hang, tests): the next batch hangs this thread, before or after its commit. */
type Fault = 'before-commit' | 'after-commit';
let fault: Fault | null = null;
function hang(): never {
  for (;;); // until terminated, as a thread stuck in a system call answers nothing
}

const PRUNE_EVERY = 512;
let batches = 0;

parentPort!.on('message', (m: Batch | { fault: Fault }) => {
  if ('fault' in m) {
    fault = m.fault;
    return;
  }
  const batch = m;
  if (fault === 'before-commit') hang();
  if (batches++ % PRUNE_EVERY === 0) {
    // Queued before the batch's writes, in its own transaction; a failure is retried PRUNE_EVERY batches later.
    db.write(async (ex) => {
      await ex.lock('shared');
      await pruneDeferredMarks(ex, Date.now() - DEFERRED_MARK_TTL_MS);
    }, 'declared').catch(() => undefined);
  }
  // As inlineSink (deferred.ts): touches, and the audit rows per chain, committed together.
  writeDeferred(db, key, batch.audit, batch.agents, batch.tokens, batch.key).then(
    () => {
      if (fault === 'after-commit') hang();
      parentPort!.postMessage({ id: batch.id, ok: true });
    },
    (err: unknown) => {
      const code = (err as { code?: string }).code ?? 'internal';
      if (!(err instanceof PartialFlush)) return parentPort!.postMessage({ id: batch.id, ok: false, code });
      // Rows are named by their index in the batch (the parent holds them).
      const unwritten = err.audit.map((a) => batch.audit.indexOf(a));
      parentPort!.postMessage({ id: batch.id, ok: false, code, unwritten, touches: err.touches });
    },
  );
});
