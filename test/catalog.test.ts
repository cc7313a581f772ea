import { describe, expect, it } from 'vitest';
import { inputJsonSchema, toolOf } from '../src/api/mcp/tools.js';
import { PERMISSIONS } from '../src/core/roles.js';
import { z } from 'zod';
import { defineOp } from '../src/ops/catalog.js';
import { CATALOG } from '../src/ops/index.js';
import { lazy } from '../src/ops/schemas.js';
import { buildProgram } from '../src/cli/main.js';

/** The catalog is the contract every surface is generated from; these are its invariants. */
describe('op catalog', () => {
  it('holds the DESIGN §3 names (plus the lists and human decisions of this stage)', () => {
    expect(CATALOG.map((o) => o.name)).toEqual([
      'whoami',
      'agent_list',
      'plan_get',
      'plan_update',
      'server_status',
      'prime',
      'task_create',
      'task_list',
      'task_get',
      'task_claim',
      'task_start',
      'task_heartbeat',
      'task_complete',
      'task_fail',
      'task_release',
      'task_cancel',
      'task_update',
      'message_send',
      'message_inbox',
      'message_ack',
      'message_search',
      'memory_set',
      'memory_get',
      'memory_list',
      'memory_delete',
      'discovery_add',
      'discovery_search',
      'session_start',
      'session_checkpoint',
      'session_end',
      'handoff_accept',
      'handoff_list',
      'lock_acquire',
      'lock_release',
      'lock_list',
      'lock_force_release',
      'decision_record',
      'decision_list',
      'approval_request',
      'approval_get',
      'approval_decide',
      'approval_list',
      'events_wait',
      'token_create',
      'token_list',
      'token_revoke',
      'audit_query',
      'audit_verify',
    ]);
  });

  it('gives every op a unique name, REST route and CLI command, and a known permission', () => {
    const names = new Set<string>();
    const routes = new Set<string>();
    const commands = new Set<string>();
    for (const op of CATALOG) {
      expect(op.name).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(PERMISSIONS).toContain(op.permission);
      expect(op.summary.length).toBeGreaterThan(10);
      expect(op.summary.length).toBeLessThanOrEqual(120);
      for (const [set, key] of [
        [names, op.name],
        [routes, `${op.rest.method} ${op.rest.path}`],
        [commands, `${op.cli.group} ${op.cli.command}`],
      ] as const) {
        expect(set.has(key), key).toBe(false);
        set.add(key);
      }
      if (op.kind === 'read') expect(op.rest.method === 'GET' || op.name === 'whoami').toBe(true);
    }
  });

  it('every input schema is a strict object schema with a JSON Schema for tools/list', () => {
    for (const op of CATALOG) {
      const schema = inputJsonSchema(op);
      expect(schema.type, op.name).toBe('object');
      expect(schema.additionalProperties, op.name).toBe(false);
      expect(toolOf(op).inputSchema.type, op.name).toBe('object');
      expect(op.input.safeParse({ __proto__: 1, surprise: true }).success, op.name).toBe(false);
    }
  });

  it('path parameters name input fields', () => {
    for (const op of CATALOG) {
      const props = Object.keys((toolOf(op).inputSchema.properties ?? {}) as object);
      for (const seg of op.rest.path.split('/').filter((s) => s.startsWith(':'))) {
        expect(props, `${op.name} ${seg}`).toContain(seg.slice(1));
      }
    }
  });

  it('the CLI builds a command for every op without flag clashes', () => {
    const program = buildProgram();
    for (const op of CATALOG) {
      const group = program.commands.find((c) => c.name() === op.cli.group);
      expect(group?.commands.some((c) => c.name() === op.cli.command), op.name).toBe(true);
    }
  });

  // A `baton mcp` start evaluates the catalog but calls no op: its schemas must not be built at
  // import (issue 11 cold start, docs/BENCHMARKS.md), and every reader must see one schema per op.
  it('builds an op\'s schemas on first use, once', () => {
    const built = { input: 0, output: 0 };
    const op = defineOp({
      name: 'probe_op',
      summary: 'a probe for schema laziness',
      input: () => (built.input++, z.object({ n: z.number() }).strict()),
      output: () => (built.output++, z.object({ ok: z.boolean() })),
      permission: 'self',
      kind: 'read',
      tier: 'all',
      rest: { method: 'GET', path: '/probe' },
      cli: { group: 'probe', command: 'run' },
      handler: async (_ctx, input) => ({ ok: input.n > 0 }),
    });
    expect(built).toEqual({ input: 0, output: 0 });
    const first = op.input;
    expect(built).toEqual({ input: 1, output: 0 });
    expect(op.input).toBe(first);
    expect(op.output).toBe(op.output);
    expect(built).toEqual({ input: 1, output: 1 });
    expect(first.safeParse({ n: 1, extra: 1 }).success).toBe(false);
  });

  it('defines every catalog op through defineOp: input and output are built on first read', () => {
    for (const op of CATALOG) {
      for (const key of ['input', 'output'] as const) {
        const d = Object.getOwnPropertyDescriptor(op, key);
        expect(typeof d?.get, `${op.name}.${key}`).toBe('function');
      }
    }
  });

  it('lazy pieces are built once, on the first call', () => {
    let calls = 0;
    const piece = lazy(() => (calls++, z.string()));
    expect(calls).toBe(0);
    expect(piece()).toBe(piece());
    expect(calls).toBe(1);
  });
});
