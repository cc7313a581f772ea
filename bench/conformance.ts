/**
 * Runs the official MCP conformance suite (HTTP) against `baton serve`. The suite cannot send
 * credentials, so a small local proxy adds the first-start admin key to every request and passes
 * everything else (Host and Origin included) through unchanged.
 * Usage: node --import tsx bench/conformance.ts [extra conformance args]
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startProcess } from './lib.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-conformance-'));
const bin = resolve(import.meta.dirname, '../bin/baton.js');
const data = join(dir, 'data');
const firstKey = await new Promise<string>((res, rej) =>
  execFile(process.execPath, [bin, 'token', 'create', '--name', 'conformance', '--role', 'admin', '--data', data], (err, stdout) =>
    err ? rej(err) : res(stdout.trim()),
  ),
);
const hub = await startProcess([bin, 'serve', '--port', '0', '--data', data], { BATON_LOG_LEVEL: 'warn' }, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
const target = new URL(hub.url);

const proxy = createServer((req, res) => {
  const up = request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, authorization: `Bearer ${firstKey}` } },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
  );
  up.on('error', () => res.writeHead(502).end());
  req.pipe(up);
});
await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
const port = (proxy.address() as AddressInfo).port;

const args = ['-y', '-p', 'node@22', '-p', '@modelcontextprotocol/conformance@0.1.16', '--', 'conformance', 'server', '--url', `http://localhost:${port}/mcp`, ...process.argv.slice(2)];
const code = await new Promise<number>((r) => {
  const child = execFile('npx', args, { maxBuffer: 64 * 1024 * 1024 }, (err) => r(err ? ((err as { code?: number }).code ?? 1) : 0));
  child.stdout!.pipe(process.stdout);
  child.stderr!.pipe(process.stderr);
});
proxy.close();
await hub.stop();
rmSync(dir, { recursive: true, force: true });
process.exitCode = code;
