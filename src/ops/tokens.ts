import { z } from 'zod';
import { generateKey, hashKey, keyPrefix } from '../auth/keys.js';
import { isAddressOrCidr } from '../core/net.js';
import { setAllowedAddresses } from '../store/auth.js';
import { setKeyTools } from '../store/tiers.js';
import { TIERS, isTier } from '../core/tiers.js';
import { BatonError, notFound } from '../core/errors.js';
import type { Audience } from '../core/audience.js';
import { newId } from '../core/ids.js';
import { agentByName, createAgent, ensureProject, insertToken, listTokens, projectByName, revokeToken, tokenById } from '../store/directory.js';
import type { TokenWithProject } from '../store/directory.js';
import { defineOp, type OpDef } from './catalog.js';
import { lazy, agentName, projectName, roleName, tokenId } from './schemas.js';

const ADMINS: Audience = { kind: 'admin' };
const selfOnly = (agentId: string): Audience => ({ kind: 'agent', agentId });

const tokenOut = lazy(() => z.object({
  id: z.string(),
  name: z.string(),
  role: z.string(),
  project: z.string(),
  prefix: z.string(),
  server_admin: z.boolean(),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
  last_used_at: z.string().nullable(),
  /** Client addresses (IPs or CIDR ranges) the key is bound to; null: any (S2). */
  allowed_addresses: z.array(z.string()).nullable(),
  /** The tool tier its MCP tools/list shows; null: the server default (toolsDefault). */
  tools: z.enum(TIERS).nullable(),
}));

import { iso } from '../core/time.js';

function toTokenOut(t: TokenWithProject): z.infer<ReturnType<typeof tokenOut>> {
  return {
    id: t.id,
    name: t.name,
    role: t.role,
    project: t.project_name,
    prefix: t.prefix,
    server_admin: t.server_admin === 1,
    created_at: iso(t.created_at)!,
    expires_at: iso(t.expires_at),
    revoked_at: iso(t.revoked_at),
    last_used_at: iso(t.last_used_at),
    allowed_addresses: bindingOf((t as { allowed_addresses?: string | null }).allowed_addresses),
    tools: tierOf((t as { tools?: string | null }).tools),
  };
}

function tierOf(v: string | null | undefined): z.infer<ReturnType<typeof tokenOut>>['tools'] {
  return isTier(v) ? v : null;
}

function bindingOf(json: string | null | undefined): string[] | null {
  if (json === null || json === undefined) return null;
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : null;
  } catch {
    return null;
  }
}

export const tokenCreate = defineOp({
  name: 'token_create',
  summary: 'Issue an API key for an agent name and role; the key is shown once.',
  input: () => z
    .object({
      name: agentName(),
      role: roleName(),
      project: projectName().optional().describe("default: your project; others need a server admin"),
      expires_in_s: z.number().int().min(60).max(10 * 365 * 86_400).optional(),
      server_admin: z.boolean().optional(),
      for_existing_agent: z
        .boolean()
        .optional()
        .describe('issue a key for an agent that already exists (its role must match)'),
      allowed_addresses: z
        .array(z.string().max(64).refine(isAddressOrCidr, 'expected an IP address or CIDR range'))
        .max(20)
        .optional()
        .describe('bind the key to these client IPs/CIDRs'),
      tools: z.enum(TIERS).optional().describe("tool tier its MCP tools/list shows: core (the daily loop), standard, all (default: the server's)"),
    })
    .strict(),
  output: () => z.object({ token: tokenOut(), key: z.string() }),
  permission: 'token.admin',
  kind: 'write',
  tier: 'all',
  rest: { method: 'POST', path: '/tokens' },
  cli: { group: 'token', command: 'create' },
  async handler(ctx, input) {
    const p = ctx.principal;
    if (!ctx.services.roles.has(input.role)) {
      throw new BatonError('invalid_input', `role: unknown role "${input.role}"; known: ${ctx.services.roles.names().join(', ')}`);
    }
    const crossProject = input.project !== undefined && input.project !== p.projectName;
    if ((crossProject || input.server_admin === true) && !p.serverAdmin) {
      throw new BatonError('forbidden', 'only a server admin may issue keys for other projects or server-admin keys');
    }
    const project = crossProject ? await ensureProject(ctx.tx, input.project!, ctx.now) : { id: p.projectId, name: p.projectName };
    // The agent a key speaks for exists from the key's creation on (authentication never writes).
    // A key for an agent that exists speaks as that agent (its memory, its mail): only when asked
    // for explicitly, and never with another role (issue 8: a key must not rewrite an identity).
    const existing = await agentByName(ctx.tx, project.id, input.name);
    if (existing === undefined) await createAgent(ctx.tx, project.id, input.name, input.role, ctx.now);
    else if (input.for_existing_agent !== true) {
      throw new BatonError('conflict', `agent "${input.name}" already exists; to issue it another key say so (for_existing_agent: true, CLI --for-existing-agent)`);
    } else if (existing.role !== input.role) {
      throw new BatonError('conflict', `agent "${input.name}" has role "${existing.role}"; a key for it must have the same role`);
    }
    const key = generateKey();
    const id = newId('tok');
    const expiresAt = input.expires_in_s === undefined ? null : ctx.now + input.expires_in_s * 1000;
    await insertToken(ctx.tx, {
      id,
      project_id: project.id,
      name: input.name,
      role: input.role,
      server_admin: input.server_admin === true ? 1 : 0,
      key_hash: hashKey(ctx.services.keyPepper, key),
      prefix: keyPrefix(key),
      created_by: p.agentId,
      created_at: ctx.now,
      expires_at: expiresAt,
    });
    if (input.allowed_addresses !== undefined && input.allowed_addresses.length > 0) {
      await setAllowedAddresses(ctx.tx, id, JSON.stringify(input.allowed_addresses));
    }
    if (input.tools !== undefined) await setKeyTools(ctx.tx, id, input.tools);
    ctx.target(id);
    // Key lifecycle is for admins: observers and workers must not learn who gets keys (issue 8).
    // Events go to the caller's project: a key of another project is announced to nobody there (S9).
    await ctx.emit('token.created', id, { role: input.role, name: input.name }, crossProject ? selfOnly(p.agentId) : ADMINS);
    const row = await tokenById(ctx.tx, id);
    return { token: toTokenOut(row!), key };
  },
});

export const tokenList = defineOp({
  name: 'token_list',
  summary: 'List API keys (never the keys) of your project, or another (server admin).',
  input: () => z.object({ project: projectName().optional(), all: z.boolean().optional() }).strict(),
  output: () => z.object({ tokens: z.array(tokenOut()) }),
  permission: 'token.admin',
  kind: 'read',
  tier: 'all',
  rest: { method: 'GET', path: '/tokens' },
  cli: { group: 'token', command: 'list' },
  async handler(ctx, input) {
    const p = ctx.principal;
    if ((input.all === true || (input.project !== undefined && input.project !== p.projectName)) && !p.serverAdmin) {
      throw new BatonError('forbidden', 'only a server admin may list keys of other projects');
    }
    let projectId: string | null = p.projectId;
    if (input.all === true) projectId = null;
    else if (input.project !== undefined) {
      const found = await projectByName(ctx.tx, input.project);
      if (found === undefined) throw notFound('project');
      projectId = found.id;
    }
    return { tokens: (await listTokens(ctx.tx, projectId)).map(toTokenOut) };
  },
});

export const tokenRevoke = defineOp({
  name: 'token_revoke',
  summary: 'Revoke an API key; it is refused from its very next request.',
  input: () => z.object({ id: tokenId() }).strict(),
  output: () => z.object({ id: z.string(), revoked: z.boolean() }),
  permission: 'token.admin',
  kind: 'write',
  tier: 'all',
  rest: { method: 'DELETE', path: '/tokens/:id' },
  cli: { group: 'token', command: 'revoke', positional: 'id' },
  async handler(ctx, { id }) {
    const row = await tokenById(ctx.tx, id);
    // Another project's key is "not found", never "forbidden": its existence is not confirmed (S9).
    if (row === undefined || (row.project_id !== ctx.principal.projectId && !ctx.principal.serverAdmin)) {
      throw notFound('token');
    }
    ctx.target(id);
    const revoked = await revokeToken(ctx.tx, id, ctx.now);
    const own = row.project_id === ctx.principal.projectId;
    if (revoked) await ctx.emit('token.revoked', id, undefined, own ? ADMINS : selfOnly(ctx.principal.agentId));
    return { id, revoked };
  },
});

export const TOKEN_OPS: readonly OpDef[] = [tokenCreate, tokenList, tokenRevoke];
