import { z } from 'zod';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import { inputJsonSchema } from '../mcp/tools.js';

/**
 * `GET /api/v1/schemas` and `GET /api/v1/schemas/:op`: the full JSON Schemas of the ops the caller
 * may call — every limit, pattern and default that tools/list leaves out to stay small (the
 * compact form there keeps only what an agent is likely to hit). Ops the caller's role is not
 * granted are not found, as on every other path.
 */
export async function schemaRoute(hub: Hub, parts: readonly string[], who: ResolvePrincipal): Promise<unknown> {
  const principal = await hub.db.read(who);
  const ops = hub.runner.visibleOps(principal);
  if (parts.length === 1) return { ops: ops.map((op) => ({ name: op.name, summary: op.summary, input: inputJsonSchema(op) })) };
  const op = parts.length === 2 ? ops.find((o) => o.name === parts[1]) : undefined;
  if (op === undefined) throw new BatonError('not_found', 'no such op');
  const output = z.toJSONSchema(op.output, { io: 'output', unrepresentable: 'any' }) as Record<string, unknown>;
  delete output.$schema;
  return { name: op.name, summary: op.summary, input: inputJsonSchema(op), output };
}
