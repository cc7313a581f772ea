import { request, type ClientRequest, type IncomingMessage } from 'node:http';

/** One Server-Sent Events frame as a client parses it. */
export interface SseFrame {
  id?: string;
  event: string;
  data: string;
}

/**
 * A real HTTP client of the event stream (node:http): parses frames as they arrive, and can stop
 * reading (a slow consumer). `next` waits (bounded) for the next frame that matches.
 */
export class SseClient {
  readonly frames: SseFrame[] = [];
  comments = 0;
  retry: number | null = null;
  ended = false;
  status = 0;
  headers: IncomingMessage['headers'] = {};
  body = '';
  private buf = '';
  private waiters: (() => void)[] = [];
  private req: ClientRequest | null = null;
  private res: IncomingMessage | null = null;
  private taken = 0;

  static open(base: string, path: string, headers: Record<string, string>): Promise<SseClient> {
    const c = new SseClient();
    const u = new URL(path, base);
    return new Promise((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'GET', headers: { accept: 'text/event-stream', ...headers }, agent: false }, (res) => {
        c.res = res;
        c.status = res.statusCode ?? 0;
        c.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => c.feed(chunk));
        res.on('end', () => c.finish());
        res.on('error', () => c.finish());
        resolve(c);
      });
      c.req = req;
      req.on('error', (err) => {
        if (c.res === null) reject(err);
        else c.finish();
      });
      req.end();
    });
  }

  private feed(chunk: string): void {
    if (this.status !== 200) {
      this.body += chunk;
      return;
    }
    this.buf += chunk;
    for (;;) {
      const end = this.buf.indexOf('\n\n');
      if (end === -1) break;
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      const f: SseFrame = { event: 'message', data: '' };
      let isFrame = false;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments++;
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'retry') this.retry = Number(value);
        else if (field === 'id') f.id = value;
        else if (field === 'event') f.event = value;
        else if (field === 'data') data.push(value);
        if (field === 'id' || field === 'event' || field === 'data') isFrame = true;
      }
      if (isFrame) {
        f.data = data.join('\n');
        this.frames.push(f);
      }
    }
    this.wake();
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** Resolves when `cond` holds (checked at every arrival), or rejects after `ms`. */
  async until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next frame not yet taken that matches (earlier non-matching ones are skipped). */
  async next(match: (f: SseFrame) => boolean = () => true, what = 'a frame', ms = 10_000): Promise<SseFrame> {
    let found: SseFrame | undefined;
    await this.until(() => {
      while (this.taken < this.frames.length) {
        const f = this.frames[this.taken++]!;
        if (match(f)) {
          found = f;
          return true;
        }
      }
      return false;
    }, what, ms);
    return found!;
  }

  /** Events (not errors or resets) received so far, parsed. */
  events(): { id: string; type: string; subject: string | null; actor: string | null; data: Record<string, unknown> | null }[] {
    return this.frames.filter((f) => f.event !== 'error' && f.event !== 'reset').map((f) => JSON.parse(f.data) as never);
  }

  /** Stops reading: the hub's writes pile up in the socket buffers, then in its own. */
  pause(): void {
    this.res?.pause();
    this.res?.socket.pause();
  }

  resume(): void {
    this.res?.socket.resume();
    this.res?.resume();
  }

  close(): void {
    this.req?.destroy();
  }
}
