import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  ico: 'image/x-icon',
  txt: 'text/plain; charset=utf-8',
};
/** Asset names as the build writes them: a plain name, one dot-extension; nothing else is ever looked up. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*\.[a-z0-9]+$/;

interface StaticFile {
  body: Buffer;
  gzip: Buffer | null;
  type: string;
  etag: string;
  cache: string;
}

/**
 * The dashboard's files (dist/web, written by `npm run build`), served at `/` and `/assets/…`.
 * Every file is read once at start into a table keyed by its URL path: a request is a lookup in
 * that table, never a path joined onto the file system, so no URL (`..`, `%2e%2e`, backslashes,
 * symlinks) can reach another file. Hashed assets are cached for a year (`immutable`: a new build
 * has new names); index.html is revalidated every time (ETag) so a new build is picked up at once.
 * Text files are gzipped once, at load. The security headers, among them the dashboard's CSP
 * (guard.ts: `script-src 'self'; style-src 'self'`, nothing inline), come from SecureResponse
 * like every other answer's.
 */
export class StaticFiles {
  private readonly files = new Map<string, StaticFile>();
  readonly dir: string | null;

  constructor(dir: string | null = findWebDir()) {
    this.dir = dir;
    if (dir === null) return;
    const index = join(dir, 'index.html');
    if (existsSync(index)) this.add('/', readFileSync(index), 'html', 'no-cache');
    const assets = join(dir, 'assets');
    if (!existsSync(assets)) return;
    for (const name of readdirSync(assets)) {
      const ext = name.slice(name.lastIndexOf('.') + 1);
      const full = join(assets, name);
      if (!ASSET_NAME.test(name) || TYPES[ext] === undefined) continue;
      try {
        if (statSync(full).isFile()) this.add(`/assets/${name}`, readFileSync(full), ext, 'public, max-age=31536000, immutable');
      } catch {
        // Removed between the listing and the read (a rebuild replacing an old asset): not served.
      }
    }
  }

  get size(): number {
    return this.files.size;
  }

  private add(path: string, body: Buffer, ext: string, cache: string): void {
    const type = TYPES[ext]!;
    const compressible = type.startsWith('text/') || ext === 'svg';
    const gz = compressible ? gzipSync(body, { level: 9 }) : null;
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    this.files.set(path, { body, gzip: gz !== null && gz.length < body.length ? gz : null, type, etag, cache });
  }

  /** True when `path` is one of the dashboard's URLs (GET/HEAD): the request was answered. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const file = this.files.get(path === '/index.html' ? '/' : path);
    if (file === undefined) return false;
    const headers: Record<string, string | number> = {
      'content-type': file.type,
      'cache-control': file.cache,
      etag: file.etag,
      vary: 'Accept-Encoding',
    };
    if (req.headers['if-none-match'] === file.etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    const gzip = file.gzip !== null && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
    const body = gzip ? file.gzip! : file.body;
    if (gzip) headers['content-encoding'] = 'gzip';
    headers['content-length'] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  }
}

/** dist/web beside the compiled code (dist/api/http → dist/web), or the repo's dist/web when run from src/. */
function findWebDir(): string | null {
  for (const rel of ['../../web', '../../../dist/web']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return null;
}

/** Paths the dashboard owns; they are public (no credential), so they do not authenticate a connection. */
export function isDashboardPath(path: string): boolean {
  return path === '/' || path === '/index.html' || path.startsWith('/assets/');
}
