/**
 * The deferred writer's worker thread (see deferred.ts `WorkerSink`): its own SQLite connection
 * to the same file, writing batches of audit rows and touches in write transactions. Hashing and
 * inserting a read's audit row cost about a tenth of the read; here they run beside the request
 * path instead of on it. The chain stays one chain: every writer of audit rows, on any
 * connection, reads the head inside its own BEGIN IMMEDIATE transaction.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { touchAgents, touchTokens } from '../store/directory.js';
import { appendAudits, type AuditEntry } from '../store/journal.js';
import { openStore } from '../store/open.js';
import type { Durability } from '../store/sqlite.js';

interface Batch {
  id: number;
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

parentPort!.on('message', (batch: Batch) => {
  db.write(async (ex) => {
    // As inlineSink (deferred.ts): touches, then the audit rows.
    await ex.lock('shared');
    await touchAgents(ex, batch.agents);
    await touchTokens(ex, batch.tokens);
    await appendAudits(ex, batch.audit, key);
  }, 'declared').then(
    () => parentPort!.postMessage({ id: batch.id, ok: true }),
    (err: unknown) => parentPort!.postMessage({ id: batch.id, ok: false, code: (err as { code?: string }).code ?? 'internal' }),
  );
});
