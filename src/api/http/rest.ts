import type { GoneSignal } from '../../core/gone.js';
import type { IncomingMessage } from 'node:http';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import type { OpDef } from '../../ops/catalog.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import { inputJsonSchema } from '../mcp/tools.js';
import { parseJson, readBody } from './body.js';
import { clientAddress } from './auth-routes.js';
import { schemaRoute } from './schemas.js';

interface Route {
  method: string;
  segments: string[];
  op: OpDef;
  /** JSON Schema types of the op's top-level input fields, for coercing query strings. */
  types: Map<string, string>;
}

/**
 * REST routes under /api/v1, generated from the catalog: each op declares its method and path;
 * `:name` path segments fill input fields. GET and DELETE take the rest of the input from the
 * query string (numbers, booleans and comma-separated arrays coerced by the op's schema);
 * POST, PUT and PATCH from a JSON object body.
 */
export class RestRouter {
  private readonly routes: Route[];

  constructor(private readonly hub: Hub) {
    this.routes = [...hub.runner.ops.values()].map((op) => {
      const props = (inputJsonSchema(op).properties ?? {}) as Record<string, { type?: string }>;
      return {
        method: op.rest.method,
        segments: op.rest.path.split('/').filter(Boolean),
        op,
        types: new Map(Object.entries(props).map(([k, v]) => [k, v.type ?? 'string'])),
      };
    });
  }

  async handle(
    req: IncomingMessage,
    path: string,
    query: string,
    who: ResolvePrincipal,
    requestId: string,
    signal?: GoneSignal,
  ): Promise<unknown> {
    const parts = path.split('/').filter(Boolean);
    if (parts[0] === 'schemas' && req.method === 'GET') return schemaRoute(this.hub, parts, who);
    let matched: { route: Route; params: Record<string, string> } | undefined;
    let pathMatched = false;
    for (const route of this.routes) {
      const params = match(route.segments, parts);
      if (params === null) continue;
      pathMatched = true;
      if (route.method === req.method) {
        matched = { route, params };
        break;
      }
    }
    if (matched === undefined) {
      throw new BatonError(pathMatched ? 'invalid_input' : 'not_found', pathMatched ? 'method not allowed here' : 'no such route');
    }
    const { route, params } = matched;
    let input: Record<string, unknown>;
    if (req.method === 'GET' || req.method === 'DELETE') {
      input = coerceQuery(new URLSearchParams(query.startsWith('?') ? query.slice(1) : query), route.types);
    } else {
      const text = await readBody(req, this.hub.config.maxBodyBytes);
      const body = text.trim() === '' ? {} : parseJson(text, this.hub.config.maxJsonDepth);
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new BatonError('invalid_input', 'body must be a JSON object');
      }
      input = body as Record<string, unknown>;
    }
    for (const [k, v] of Object.entries(params)) {
      if (k in input && input[k] !== v) throw new BatonError('invalid_input', `${k} in the body differs from the path`);
      input[k] = v;
    }
    return this.hub.call(route.op.name, input, who, {
      requestId,
      transport: 'rest',
      address: clientAddress(req),
      signal,
    });
  }
}

function match(segments: readonly string[], parts: readonly string[]): Record<string, string> | null {
  if (segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const p = parts[i]!;
    if (s.startsWith(':')) {
      let value: string;
      try {
        value = decodeURIComponent(p);
      } catch {
        return null;
      }
      params[s.slice(1)] = value;
    } else if (s !== p) return null;
  }
  return params;
}

function coerceQuery(q: URLSearchParams, types: ReadonlyMap<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of new Set(q.keys())) {
    const values = q.getAll(key);
    const type = types.get(key);
    const last = values[values.length - 1]!;
    if (type === 'array') out[key] = values.flatMap((v) => v.split(',')).filter((v) => v !== '');
    else if (values.length > 1) throw new BatonError('invalid_input', `${key} given more than once`);
    else if (type === 'integer' || type === 'number') out[key] = /^-?\d+(\.\d+)?$/.test(last) ? Number(last) : last;
    else if (type === 'boolean') out[key] = last === 'true' ? true : last === 'false' ? false : last;
    else out[key] = last;
  }
  return out;
}
