import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';

export interface Proc {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}

/** Starts a server process and waits for the line that gives its address. */
export function startProcess(args: string[], env: Record<string, string>, pattern: RegExp, stream: 'stdout' | 'stderr'): Promise<Proc> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no start line from ${args.join(' ')}: ${buf}`)), 15_000);
    child[stream]!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = pattern.exec(buf);
      if (m !== null) {
        clearTimeout(timer);
        resolve({
          child,
          url: `http://127.0.0.1:${m[1]}`,
          stop: () =>
            new Promise((r) => {
              child.once('exit', () => r());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${buf}`)));
  });
}

export interface Rpc {
  call(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>>;
  tool<T = Record<string, unknown>>(name: string, args: Record<string, unknown>): Promise<T>;
  close(): void;
}

/** A minimal MCP-over-HTTP client (legacy wire, JSON responses) on one keep-alive socket. */
export function rpcClient(url: string, key: string, latencies?: number[]): Rpc {
  const u = new URL('/mcp', url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let id = 0;
  const call = (method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params });
      const started = performance.now();
      const req = request(
        {
          agent,
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: {
            authorization: `Bearer ${key}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-protocol-version': '2025-11-25',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            latencies?.push(performance.now() - started);
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              const json = JSON.parse(text.startsWith('event:') ? text.split('\ndata: ')[1]! : text) as {
                result?: Record<string, unknown>;
                error?: unknown;
              };
              if (json.result === undefined) reject(new Error(text));
              else resolve(json.result);
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  return rpcOf(call, () => agent.destroy());
}

/** An Rpc over a `call`: `tool` unwraps a tools/call result (an error result throws). */
function rpcOf(call: Rpc['call'], close: () => void): Rpc {
  return {
    call,
    async tool<T>(name: string, args: Record<string, unknown>): Promise<T> {
      const r = (await call('tools/call', { name, arguments: args })) as { isError?: boolean; structuredContent: T };
      if (r.isError === true) throw new Error(`${name}: ${JSON.stringify(r.structuredContent)}`);
      return r.structuredContent;
    },
    close,
  };
}

/**
 * The same calls as rpcClient on one raw keep-alive socket: the request's bytes written by hand, the
 * answer read by its content-length (one request in flight per socket, as an agent does). On this
 * 2-core machine the load generator shares the server's cores; node's HTTP client costs ~100 µs a
 * call, this one a fraction of it, so the server, not the client, is what a ratio measures.
 */
export function rawRpcClient(url: string, key: string, latencies?: number[]): Rpc {
  const u = new URL('/mcp', url);
  const head =
    `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
    'Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: 2025-11-25\r\nContent-Length: ';
  let socket: Socket | null = null;
  let buf: Buffer = Buffer.alloc(0);
  let pending: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; started: number } | null = null;
  const fail = (e: Error): void => {
    const p = pending;
    pending = null;
    socket = null;
    p?.reject(e);
  };
  const onData = (chunk: Buffer): void => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const headers = buf.subarray(0, end).toString('latin1');
    const m = /\r\ncontent-length: *(\d+)/i.exec(headers);
    if (m === null) return fail(new Error(`no content-length: ${headers.slice(0, 200)}`));
    const total = end + 4 + Number(m[1]);
    if (buf.length < total) return;
    const text = buf.subarray(end + 4, total).toString('utf8');
    buf = buf.subarray(total);
    const p = pending;
    pending = null;
    if (p === null) return;
    latencies?.push(performance.now() - p.started);
    try {
      const json = JSON.parse(text) as { result?: Record<string, unknown> };
      if (json.result === undefined) p.reject(new Error(text));
      else p.resolve(json.result);
    } catch (err) {
      p.reject(err as Error);
    }
  };
  let id = 0;
  const call = (method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      if (socket === null) {
        socket = connect(Number(u.port), u.hostname);
        socket.setNoDelay(true);
        socket.on('data', onData);
        socket.on('error', (e) => fail(e));
        socket.on('close', () => fail(new Error('connection closed')));
      }
      const body = JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params });
      pending = { resolve, reject, started: performance.now() };
      socket.write(head + Buffer.byteLength(body) + '\r\n\r\n' + body);
    });
  return rpcOf(call, () => {
    socket?.destroy();
    socket = null;
  });
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Wall times (ms) of `n` bare `node -e 0` processes: the floor a CLI's cold start is compared with. */
export async function bareNodeStarts(n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', () => resolve());
    });
    times.push(performance.now() - started);
  }
  return times;
}
