/* global process, Buffer, URL */
// A client that starts a long `task_claim` (or `message_inbox`) wait and then waits to be SIGKILLed (abandoned-waits.test.ts).
// A separate process, so its death is real: the kernel closes its sockets and pipes.
// Plain JS (no tsx start-up cost: several start at once on a small machine).
//   node ghost.mjs rest  URL KEY WAIT_MS    POST /api/v1/tasks/claim
//   node ghost.mjs mcp   URL KEY WAIT_MS    POST /mcp, one tools/call (the lean path)
//   node ghost.mjs batch URL KEY WAIT_MS    POST /mcp, a JSON-RPC batch of two claims (the SDK path)
//   node ghost.mjs stdio DATA KEY WAIT_MS   its own `baton mcp` child, spoken to over stdio
//   node ghost.mjs inbox URL KEY WAIT_MS    POST /api/v1/messages/inbox (waits for mail, marks it read)
//   node ghost.mjs inbox-mcp URL KEY WAIT_MS  message_inbox over POST /mcp (the lean path)
// Prints "sent" (with "pid N" of its baton mcp) once the wait is on its way.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { resolve } from 'node:path';

const [mode, where, key, waitArg] = process.argv.slice(2);
const wait_ms = Number(waitArg);
const inbox = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'message_inbox', arguments: { wait_ms } } });
const claim = (id) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms } } });

function post(path, body, headers) {
  const u = new URL(path, where);
  const text = JSON.stringify(body);
  const req = request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers },
  });
  req.on('response', (res) => {
    let answer = '';
    res.on('data', (d) => (answer += d));
    res.on('end', () => process.stdout.write(`answered ${res.statusCode} ${answer}\n`));
  });
  req.on('error', (e) => process.stdout.write(`error ${e.message}\n`));
  req.end(text, () => process.stdout.write('sent\n'));
}

const mcpHeaders = (version) => ({ accept: 'application/json, text/event-stream', 'mcp-protocol-version': version });

if (mode === 'rest') post('/api/v1/tasks/claim', { wait_ms });
else if (mode === 'mcp') post('/mcp', claim(1), mcpHeaders('2025-11-25'));
else if (mode === 'inbox') post('/api/v1/messages/inbox', { wait_ms });
else if (mode === 'inbox-mcp') post('/mcp', inbox(1), mcpHeaders('2025-11-25'));
else if (mode === 'batch') post('/mcp', [claim(1), claim(2)], mcpHeaders('2025-03-26'));
else if (mode === 'stdio') {
  const bin = resolve(import.meta.dirname, '../../bin/baton.js');
  const child = spawn(process.execPath, [bin, 'mcp', '--data', where], {
    env: { ...process.env, BATON_TOKEN: key },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let buf = '';
  child.stdout.on('data', (d) => {
    buf += d;
    if (buf.includes('"id":1')) {
      buf = '';
      child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
      child.stdin.write(JSON.stringify(claim(2)) + '\n', () => process.stdout.write(`sent pid ${child.pid}\n`));
    } else if (buf.includes('"id":2')) process.stdout.write(`answered ${buf}\n`);
  });
  child.stdin.write(
    JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'ghost', version: '1' } } }) + '\n',
  );
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
