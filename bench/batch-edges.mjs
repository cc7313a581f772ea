// Times one task_create batch of N tasks x D dependencies (in-process hub over dist/; npm run build first).
// Usage: node bench/batch-edges.mjs [repo root] ['[[500,100],[500,10]]']. Item 10 of the second security round.
import { pino } from 'pino';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
const root = resolve(process.argv[2] ?? '.');
const { Hub } = await import(join(root, 'dist/hub.js'));
const { ConfigSchema } = await import(join(root, 'dist/config.js'));
const dir = mkdtempSync(join(tmpdir(), 'bench-'));
const hub = await Hub.open(ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'silent' }), { log: pino({ level: 'silent' }) });
const admin = await hub.authenticate(hub.firstStartKey);
let n = 0;
async function batch(count, depsPer) {
  const tasks = [];
  for (let i = 0; i < count; i++) {
    const deps = [];
    for (let k = 1; k <= Math.min(depsPer, i); k++) deps.push(`r${n}_${i - k}`);
    tasks.push({ title: `t${i}`, ref: `r${n}_${i}`, depends_on: deps });
  }
  n++;
  const t0 = performance.now();
  let code = 'ok';
  try { await hub.call('task_create', { tasks }, admin, { requestId: `req_b${n}`, transport: 'internal' }); }
  catch (e) { code = e.code ?? String(e); }
  return [performance.now() - t0, code];
}
for (const [c, d] of (process.argv[3] ? JSON.parse(process.argv[3]) : [[500, 100], [500, 10], [50, 100], [500, 0]])) {
  const times = [];
  let code;
  for (let r = 0; r < 3; r++) { const [ms, k] = await batch(c, d); times.push(ms.toFixed(0)); code = k; }
  console.log(`${c} tasks x ${d} deps (${c * d} edges): ${times.join(', ')} ms -> ${code}`);
}
await hub.close();
rmSync(dir, { recursive: true, force: true });
