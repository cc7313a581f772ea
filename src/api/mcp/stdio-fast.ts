import { PassThrough, type Readable, type Writable } from 'node:stream';
import { INSTRUCTIONS, SERVER_INFO } from './identity.js';
import { hasShape, isEmptyObject, isId, isObject, type Id, type Json } from './json-shape.js';

/**
 * The opening of a `baton mcp` session — initialize, notifications/initialized, tools/list — in
 * its plain, well-formed 2025-era shape, answered without the MCP SDK. Loading the SDK (its zod
 * protocol schemas, ajv) and answering through it was ~30 ms of a `baton mcp` cold start, which
 * every agent's client pays at every session start (issue 11, docs/BENCHMARKS.md).
 *
 * Anything else — another method, any field beyond the plain shape, a version the SDK does not
 * negotiate as-is, a 2026-era opening (server/discover, an envelope), a line that is not JSON —
 * hands the session to the SDK (stdio-sdk.ts), which owns the protocol: it first replays the
 * handshake this path answered (so its server holds the negotiated version and the client's
 * capabilities; its own answers to those requests are dropped), then reads on from the first
 * line not answered here. So the fast path is only ever a subset that the SDK accepts: the
 * accepted shapes are narrower than the SDK's schemas, and a test compares its answers, byte for
 * byte, with the SDK's for every role and tier and each protocol version.
 *
 * Authentication is not skipped: tools/list authenticates the key, as the SDK path's handler
 * does; when that fails, the SDK answers the request with that same failure (no second attempt,
 * so the failure throttle counts one).
 */

/**
 * The SDK's 2025-era protocol versions (`SUPPORTED_PROTOCOL_VERSIONS` of @modelcontextprotocol/
 * server; a test holds them equal). A requested one is answered as-is; any other goes to the SDK.
 */
export const LEGACY_PROTOCOL_VERSIONS: readonly string[] = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05', '2024-10-07'];

/**
 * Client capabilities of the shapes clients send at start (`{}`, `roots` with or without
 * `listChanged`, empty `sampling` and `elicitation`), all of which the SDK's schema accepts.
 */
function isPlainCapabilities(v: unknown): boolean {
  if (!isObject(v) || !hasShape(v, [], ['roots', 'sampling', 'elicitation'])) return false;
  if (v.roots !== undefined && !(isObject(v.roots) && hasShape(v.roots, [], ['listChanged']) && (v.roots.listChanged === undefined || typeof v.roots.listChanged === 'boolean'))) return false;
  return (v.sampling === undefined || isEmptyObject(v.sampling)) && (v.elicitation === undefined || isEmptyObject(v.elicitation));
}

function isPlainClientInfo(v: unknown): boolean {
  return isObject(v) && hasShape(v, ['name', 'version'], ['title']) && Object.values(v).every((x) => typeof x === 'string');
}

/** The 2025-era initialize the fast path answers; null for any other message. */
function plainInitialize(m: Json): { id: Id; protocolVersion: string } | null {
  if (m.method !== 'initialize' || !hasShape(m, ['jsonrpc', 'id', 'method', 'params']) || m.jsonrpc !== '2.0' || !isId(m.id)) return null;
  const p = m.params;
  if (!isObject(p) || !hasShape(p, ['protocolVersion', 'capabilities', 'clientInfo'])) return null;
  if (typeof p.protocolVersion !== 'string' || !LEGACY_PROTOCOL_VERSIONS.includes(p.protocolVersion)) return null;
  if (!isPlainCapabilities(p.capabilities) || !isPlainClientInfo(p.clientInfo)) return null;
  return { id: m.id, protocolVersion: p.protocolVersion };
}

function isPlainInitialized(m: Json): boolean {
  return m.method === 'notifications/initialized' && m.jsonrpc === '2.0' && (hasShape(m, ['jsonrpc', 'method']) || (hasShape(m, ['jsonrpc', 'method', 'params']) && isEmptyObject(m.params)));
}

/** A tools/list without a cursor or `_meta`; its id, else null. */
function plainToolsList(m: Json): Id | null {
  if (m.method !== 'tools/list' || m.jsonrpc !== '2.0' || !isId(m.id)) return null;
  if (hasShape(m, ['jsonrpc', 'id', 'method']) || (hasShape(m, ['jsonrpc', 'id', 'method', 'params']) && isEmptyObject(m.params))) return m.id;
  return null;
}

/** The initialize answer, serialized as the SDK serializes it (result, then jsonrpc and id). */
function initializeAnswer(id: Id, protocolVersion: string): string {
  const result = { protocolVersion, capabilities: { tools: {} }, serverInfo: SERVER_INFO, instructions: INSTRUCTIONS };
  return `${JSON.stringify({ result, jsonrpc: '2.0', id })}\n`;
}

export interface FastStdioOptions {
  stdin: Readable;
  stdout: Writable;
  /** tools/list's result: the same function the SDK path's handler runs. */
  listTools(): Promise<unknown>;
  /**
   * Hands the session to the SDK: `input` holds every byte read and not answered (the handshake
   * to replay first), `answered` the replayed requests' ids and the answers the client got.
   * `listFailed`: the first line of `input` after the replay is a tools/list that failed here.
   */
  takeOver(input: Readable, answered: Map<Id, string>, listFailed: boolean): { close(): Promise<void> };
}

/** Bytes held while waiting for a line's end: the SDK's own stdio limit (its ReadBuffer). */
const MAX_BUFFERED = 64 * 1024 * 1024;

export class FastStdio {
  private buffered: Buffer | undefined;
  private readonly lines: Buffer[] = [];
  /** The lines of the handshake answered here, and the ids and answers of its requests. */
  private readonly replay: Buffer[] = [];
  private readonly answered = new Map<Id, string>();
  private initialized = false;
  private pumping = false;
  /** stdin ended (or stdout failed): nothing more is answered here. */
  private ended = false;
  private overflow = false;
  private sdk: { close(): Promise<void> } | null = null;
  private input: PassThrough | null = null;
  /** The lines being answered (close waits for it). */
  private pending: Promise<void> = Promise.resolve();

  constructor(private readonly opts: FastStdioOptions) {}

  start(): void {
    const { stdin, stdout } = this.opts;
    stdin.on('data', this.onData);
    stdin.once('end', this.onEnd);
    stdin.once('close', this.onEnd);
    // A read error is the client gone (as the SDK's transport takes it), never a crash.
    stdin.on('error', this.onEnd);
    // A client gone mid-answer (EPIPE) must not crash the process; the SDK's transport, once it
    // takes over, watches stdout itself.
    stdout.on('error', this.onEnd);
  }

  private readonly onEnd = (): void => {
    this.ended = true;
    this.kick();
  };

  private readonly onData = (chunk: Buffer): void => {
    this.buffered = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
    let at: number;
    while (this.buffered !== undefined && (at = this.buffered.indexOf(10)) !== -1) {
      this.lines.push(this.buffered.subarray(0, at + 1));
      this.buffered = at + 1 === this.buffered.length ? undefined : this.buffered.subarray(at + 1);
    }
    // A line over the SDK's limit: the SDK reads it (and refuses it as it would).
    if ((this.buffered?.length ?? 0) > MAX_BUFFERED) this.overflow = true;
    this.kick();
  };

  private kick(): void {
    if (!this.pumping && this.sdk === null) this.pending = this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.sdk === null) {
        // Once stdin has ended, lines still unanswered go to the SDK, which deals with them as it
        // would have (it starts what it reads, then stops on the end).
        if (this.ended || this.overflow) {
          if (this.lines.length > 0 || this.buffered !== undefined) this.handOver(null, false);
          return;
        }
        const line = this.lines.shift();
        if (line === undefined) return;
        const handled = await this.answer(line);
        if (handled !== true) {
          this.handOver(line, handled === 'list failed');
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Answers one line here: true; false when the SDK must; 'list failed' when tools/list failed here. */
  private async answer(line: Buffer): Promise<boolean | 'list failed'> {
    let m: unknown;
    try {
      m = JSON.parse(line.toString('utf8'));
    } catch {
      return false;
    }
    if (!isObject(m)) return false;
    if (this.replay.length === 0) {
      const init = plainInitialize(m);
      if (init === null) return false;
      const answer = initializeAnswer(init.id, init.protocolVersion);
      this.replay.push(line);
      this.answered.set(init.id, answer);
      this.opts.stdout.write(answer);
      return true;
    }
    if (!this.initialized && isPlainInitialized(m)) {
      this.initialized = true;
      this.replay.push(line);
      return true;
    }
    const id = plainToolsList(m);
    if (id === null || this.answered.has(id)) return false;
    let result: unknown;
    try {
      result = await this.opts.listTools();
    } catch {
      return 'list failed';
    }
    // As on the SDK's transport: a request still running when stdin ends is not answered.
    if (!this.ended) this.opts.stdout.write(`${JSON.stringify({ result, jsonrpc: '2.0', id })}\n`);
    return true;
  }

  /**
   * From here on the SDK reads stdin: first the replayed handshake, then `line` (the first one not
   * answered here), the lines read after it, and whatever stdin brings next.
   */
  private handOver(line: Buffer | null, listFailed: boolean): void {
    const { stdin } = this.opts;
    // Paused before its listener goes, so no chunk is read with nobody to take it.
    stdin.pause();
    this.detach();
    const input = new PassThrough();
    for (const l of [...this.replay, ...(line === null ? [] : [line]), ...this.lines]) input.write(l);
    if (this.buffered !== undefined) input.write(this.buffered);
    this.lines.length = 0;
    this.buffered = undefined;
    this.input = input;
    this.sdk = this.opts.takeOver(input, this.answered, listFailed);
    // pipe() does not carry errors: a read error reaches the SDK's transport as it would had the
    // transport read stdin itself (its onerror), never the process as an uncaught one.
    stdin.on('error', this.forwardError);
    // pipe() resumes stdin; an stdin that has already ended ends `input` after what it holds.
    stdin.pipe(input);
  }

  /** Left on stdin after close too: a late read error has a listener, and nobody to tell. */
  private readonly forwardError = (error: Error): void => {
    if (this.input !== null && this.input.listenerCount('error') > 0) this.input.emit('error', error);
  };

  private detach(): void {
    const { stdin, stdout } = this.opts;
    stdin.off('data', this.onData);
    stdin.off('end', this.onEnd);
    stdin.off('close', this.onEnd);
    stdin.off('error', this.onEnd);
    stdout.off('error', this.onEnd);
  }

  async close(): Promise<void> {
    await this.pending;
    if (this.sdk !== null) {
      await this.sdk.close();
      // The SDK's transport stops reading its input; stdin stops too (as when the SDK read it
      // itself), so an open stdin does not keep the process alive.
      if (this.input !== null) this.opts.stdin.unpipe(this.input);
    } else {
      this.detach();
    }
    this.opts.stdin.pause();
  }
}
