// Issue 7 experiment, not a product path: node:http on a worker thread, the hub on the main
// thread. The worker reads and parses each MCP `tools/call` POST and posts {key, name, args} to
// the main thread, which runs the tool as the lean path does (hub.resolver: authentication inside
// the op's transaction; audit, validation, the store) and posts back the result's JSON; the
// worker writes the JSON-RPC answer. Everything else (other methods, SSE, REST, rate limits,
// cancellation) is left out: this measures the ceiling of moving HTTP off the hub's thread.
// `node bench/split-server.mjs <dist dir> <data dir>`; prints `listening on http://127.0.0.1:PORT`.
// `RATIO_SIDES=durable,split,inproc node --import tsx bench/ratios.ts` compares it (docs/BENCHMARKS.md).
import { createServer } from 'node:http';
import { setImmediate } from 'node:timers';
import { URL } from 'node:url';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';

if (isMainThread) {
  const [dist, dataDir] = process.argv.slice(2);
  const { Hub } = await import(`${dist}/hub.js`);
  const { ConfigSchema } = await import(`${dist}/config.js`);
  const { pino } = await import('pino');
  const config = ConfigSchema.parse({ dataDir, logLevel: 'silent', rateLimit: false, durability: process.env.BATON_DURABILITY ?? 'full' });
  const hub = await Hub.open(config, { sweeper: true, deferredWorker: true, log: pino({ level: 'silent' }) });
  const worker = new Worker(new URL(import.meta.url));
  // Messages come in groups (one per worker turn): each group's calls start in one turn, so the
  // store commits them together as it does for requests read in one poll phase.
  worker.on('message', (calls) => {
    for (const m of calls) {
      hub.call(m.name, m.args ?? {}, hub.resolver(m.key), { requestId: hub.newRequestId(), transport: 'mcp-http' }).then(
        (data) => reply({ id: m.id, text: JSON.stringify(data), isError: false }),
        (err) => reply({ id: m.id, text: JSON.stringify({ error: { code: err?.code ?? 'internal', message: String(err?.message) } }), isError: true }),
      );
    }
  });
  let out = [];
  const reply = (r) => {
    if (out.length === 0) void Promise.resolve().then(() => (worker.postMessage(out), (out = [])));
    out.push(r);
  };
  process.on('SIGTERM', () => void worker.terminate().then(() => hub.close()).then(() => process.exit(0)));
} else {
  const pending = new Map();
  let seq = 0;
  parentPort.on('message', (answers) => {
    for (const a of answers) {
      const p = pending.get(a.id);
      pending.delete(a.id);
      const body = `{"jsonrpc":"2.0","id":${JSON.stringify(p.rpcId)},"result":{"content":[{"type":"text","text":${JSON.stringify(a.text)}}],"structuredContent":${a.text}${a.isError ? ',"isError":true' : ''}}}`;
      p.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      p.res.end(body);
    }
  });
  let calls = [];
  const send = (c) => {
    if (calls.length === 0) setImmediate(() => (parentPort.postMessage(calls), (calls = [])));
    calls.push(c);
  };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const key = (req.headers.authorization ?? '').slice(7);
      const id = ++seq;
      pending.set(id, { res, rpcId: body.id });
      send({ id, key, name: body.params.name, args: body.params.arguments });
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => process.stderr.write(`listening on http://127.0.0.1:${server.address().port}\n`));
}
