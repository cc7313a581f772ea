import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Config } from '../../src/config.js';
import { openHub, serve, type TestHub } from '../helpers.js';

/**
 * Slow bodies (issue 8 item 5), with raw sockets: a client that sends a plausible key, a large
 * Content-Length and one byte must neither hold its connection forever (the body deadline) nor,
 * with others like it, lock the operator out of an address's connection slots.
 */
interface Slow {
  socket: Socket;
  closed: Promise<string>;
}

function slowBody(url: string, key: string): Promise<Slow> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  socket.on('error', () => undefined);
  let out = '';
  socket.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(out)));
  return new Promise((resolve) => {
    socket.once('connect', () => {
      socket.write(
        `POST /api/v1/tasks HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${key}\r\n` +
          'content-type: application/json\r\ncontent-length: 100000\r\n\r\n{',
      );
      resolve({ socket, closed });
    });
  });
}

/** A key-shaped credential (passes the shape check, so the server must read the body). */
const PLAUSIBLE = `bat_${'a'.repeat(43)}`;

describe('transport: slow request bodies', () => {
  const open: { http: HttpHandle; t: TestHub }[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const { http, t } of open.splice(0)) {
      await http.close();
      await t.close();
    }
  });
  async function start(config: Partial<Config>): Promise<{ http: HttpHandle; t: TestHub }> {
    const t = await openHub({ config });
    const http = await serve(t.hub);
    open.push({ http, t });
    return { http, t };
  }

  it('a body that does not arrive within bodyTimeoutMs ends its connection', async () => {
    const { http } = await start({ bodyTimeoutMs: 300 });
    const slow = await slowBody(http.url, PLAUSIBLE);
    sockets.push(slow.socket);
    // Bounded only to avoid a hang: without a body deadline the connection stays open for good.
    const ended = await Promise.race([slow.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15_000))]);
    expect(ended).toBe(true);
  });

  it('slow unauthenticated connections that fill an address cannot lock the admin out', async () => {
    const { http, t } = await start({ maxConnectionsPerAddress: 6, bodyTimeoutMs: 600_000, idleTimeoutMs: 600_000 });
    for (let i = 0; i < 6; i++) sockets.push((await slowBody(http.url, PLAUSIBLE)).socket);
    const res = await fetch(`${http.url}/api/v1/whoami`, {
      headers: { authorization: `Bearer ${t.adminKey}` },
      signal: AbortSignal.timeout(15_000), // bounded only to avoid a hang
    }).catch(() => null);
    expect(res?.status).toBe(200);
    expect(((await res!.json()) as { agent: { name: string } }).agent.name).toBe('admin');
  });

  it('authenticated connections keep their slots: at the limit, a newcomer is refused', async () => {
    const { http, t } = await start({ maxConnectionsPerAddress: 2 });
    const u = new URL(http.url);
    const kept: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const s = connect(Number(u.port), u.hostname);
      s.on('error', () => undefined);
      sockets.push(s);
      kept.push(s);
      const answered = await new Promise<string>((resolve) => {
        let out = '';
        s.on('data', (c: Buffer) => {
          out += c.toString('utf8');
          if (out.includes('\r\n\r\n')) resolve(out);
        });
        s.write(`GET /api/v1/whoami HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${t.adminKey}\r\n\r\n`);
      });
      expect(answered.startsWith('HTTP/1.1 200')).toBe(true);
    }
    const refused = await fetch(`${http.url}/api/v1/whoami`, { headers: { authorization: `Bearer ${t.adminKey}` } }).then(
      () => false,
      () => true,
    );
    expect(refused).toBe(true);
    for (const s of kept) expect(s.destroyed).toBe(false);
  });
});
