import { request } from 'node:http';

/** A plain HTTP client for the browser-facing routes: every header as given (Cookie, Origin, Sec-Fetch-Site). */
export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
}

export function http(
  base: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: unknown } = {},
): Promise<Reply> {
  const u = new URL(path, base);
  const body = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers }, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json: Record<string, unknown> = {};
          try {
            json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
          } catch {
            json = {};
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The `baton_session=…` pair of a Set-Cookie answer (what a browser would send back). */
export function cookieOf(r: Reply): string {
  const set = r.headers['set-cookie'];
  const line = Array.isArray(set) ? set[0] : set;
  const m = /^(baton_session=[^;]*)/.exec(line ?? '');
  if (m === null) throw new Error(`no session cookie in ${JSON.stringify(set)}`);
  return m[1]!;
}

export function errorCode(r: Reply): string | undefined {
  return (r.json.error as { code?: string } | undefined)?.code;
}
