import { ServerResponse, type OutgoingHttpHeaders } from 'node:http';
import type { RequestGuard } from './guard.js';

/** A response that puts the security headers on before its headers go out, whoever writes it. */
export class SecureResponse extends ServerResponse {
  guard: RequestGuard | null = null;
  secured = false;

  override writeHead(statusCode: number, ...rest: unknown[]): this {
    if (!this.secured && this.guard !== null && !this.headersSent) {
      this.secured = true;
      this.guard.secure(this);
    }
    return (super.writeHead as (code: number, ...more: unknown[]) => this)(statusCode, ...rest);
  }
}

export type Send = (res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>) => void;

/**
 * The JSON writer. Security headers (S23) go on every response: most answers are JSON written
 * here, which puts them in its one writeHead() call; every other writer gets them from
 * SecureResponse just before its headers go out. (Setting them up front with setHeader() cost
 * several per cent of a cheap read: each call validates, and writeHead() then merges.)
 * A response whose client is gone is not written (nobody reads it; the call was audited).
 */
export function jsonSender(guard: RequestGuard): Send {
  const securityHeaders = guard.flatHeaders();
  return (res, status, body, headers = {}) => {
    if (res.destroyed) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const flat: (string | number)[] = [...securityHeaders, 'content-type', 'application/json', 'content-length', Buffer.byteLength(text), 'cache-control', 'no-store'];
    for (const [k, v] of Object.entries(headers)) flat.push(k, v);
    // Headers set earlier with setHeader() (CORS, Retry-After) are merged by writeHead itself.
    if (res instanceof SecureResponse) res.secured = true;
    res.writeHead(status, flat as unknown as OutgoingHttpHeaders);
    res.end(text);
  };
}
