import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { PRIME_MAX_BYTES, PRIME_RULES, fitBrief } from '../../src/ops/prime.js';
import { call, openHub, runBaton, serve, type TestHub } from '../helpers.js';

/**
 * `prime` (issue 11): a busy agent's brief stays under its bound (6,000 bytes: 2,000 tokens at 3
 * bytes per token, stricter than the usual 4) and still holds every promised section, over MCP,
 * REST and the CLI (`baton prime`, as a SessionStart hook runs it).
 */
const LONG = (s: string): string => `${s} ${'lorem ipsum dolor sit amet '.repeat(8)}`.slice(0, 190);

let t: TestHub;
let http: HttpHandle;
let key: string;
let busy: Principal;
const ids = { held: [] as string[], heldTokens: [] as number[], locks: [] as string[], mail: [] as string[], handoffs: [] as string[], approvals: [] as string[] };

beforeAll(async () => {
  t = await openHub();
  http = await serve(t.hub);
  key = (await call<{ key: string }>(t.hub, t.admin, 'token_create', { name: 'busy', role: 'worker', tools: 'core' })).key;
  busy = await t.hub.authenticate(key);
  await call(t.hub, t.admin, 'plan_update', { goal: LONG('Ship the billing service v2') });
  // 40 tasks; busy claims 3 (most urgent first), 37 stay ready for it.
  const titles = Array.from({ length: 40 }, (_, i) => ({ title: LONG(`task ${i} \u001b[31mred\u001b[0m\nsecond line`), priority: 1 + (i % 9) }));
  await call(t.hub, t.admin, 'task_create', { tasks: titles });
  for (let i = 0; i < 3; i++) {
    const { task } = await call<{ task: { id: string; lease: { token: number } } }>(t.hub, busy, 'task_claim', {});
    ids.held.push(task.id);
    ids.heldTokens.push(task.lease.token);
  }
  for (let i = 0; i < 9; i++) {
    const { lock } = await call<{ lock: { id: string } }>(t.hub, busy, 'lock_acquire', {
      paths: [`src/module-${i}/very/long/path/to/some/deeply/nested/component/**`],
      reason: LONG('refactor'),
      ...(i < 3 ? { task_id: ids.held[i] } : {}),
    });
    ids.locks.push(lock.id);
  }
  for (let i = 0; i < 8; i++) {
    const m = await call<{ id: string }>(t.hub, t.admin, 'message_send', {
      to_agents: ['busy'],
      importance: i % 2 === 0 ? 'urgent' : 'high',
      subject: `incident ${i}`,
      body: LONG('the build is red on main'),
      ack_required: true,
    });
    ids.mail.push(m.id);
  }
  await call(t.hub, t.admin, 'message_send', { to_agents: ['busy'], body: 'a normal note' });
  for (let i = 0; i < 7; i++) {
    const from = await t.hub.localPrincipal(`peer-${i}`, 'worker');
    await call(t.hub, from, 'session_start', { goal: 'part of the work' });
    const out = await call<{ handoff: { id: string } }>(t.hub, from, 'session_end', { handoff: { summary: LONG(`handoff ${i}`), to: { agent: 'busy' } } });
    ids.handoffs.push(out.handoff.id);
  }
  for (let i = 0; i < 6; i++) {
    const a = await call<{ id: string }>(t.hub, busy, 'approval_request', { action: LONG(`deploy ${i}`), risk: 'high' });
    await call(t.hub, t.admin, 'approval_decide', { id: a.id, decision: i % 2 === 0 ? 'grant' : 'deny', reason: 'looked at it' });
    ids.approvals.push(a.id);
  }
});

afterAll(async () => {
  await http.close();
  await t.close();
});

/** What every brief of this busy agent must hold. */
function expectBrief(brief: string): void {
  expect(Buffer.byteLength(brief)).toBeLessThanOrEqual(PRIME_MAX_BYTES);
  expect(brief).toContain('# Baton brief for busy (role worker, project default)');
  expect(brief).toContain('Goal: Ship the billing service v2');
  expect(brief).toContain('## Tasks you hold (3)');
  for (let i = 0; i < 3; i++) expect(brief).toContain(`${ids.held[i]}`);
  expect(brief).toContain(`lease token ${ids.heldTokens[0]}`);
  expect(brief).toContain('## Handoffs offered to you (7)');
  expect(brief).toContain(ids.handoffs[0]);
  expect(brief).toContain('## Locks you hold (9)');
  expect(brief).toContain(ids.locks[0]);
  expect(brief).toContain('Unread mail: 9 (message_inbox)');
  expect(brief).toContain('## Urgent unread mail (8)');
  expect(brief).toContain(ids.mail[0]);
  expect(brief).toContain('(ack required)');
  expect(brief).toContain('## Approvals decided for you (last 24 h) (6)');
  expect(brief).toMatch(/apr_\S+ (GRANTED|DENIED) by /);
  expect(brief).toContain('## Ready tasks you may claim (37)');
  expect(brief).toMatch(/\+\d+ more \(task_claim takes the most urgent\)/);
  expect(brief).toContain('## Rules of working with Baton');
  for (const rule of PRIME_RULES) expect(brief).toContain(rule);
  // Agents' text is one line and inert: no raw ESC, no line break from a title.
  expect(brief).not.toContain('\u001b');
  expect(brief).not.toMatch(/\nsecond line/);
}

describe('prime: a busy agent’s brief', () => {
  it('over MCP (a core tool), within the bound and with every section', async () => {
    const client = new Client({ name: 'prime-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL('/mcp', http.url), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }));
    expect((await client.listTools()).tools.map((x) => x.name)).toContain('prime');
    const r = (await client.callTool({ name: 'prime', arguments: {} })) as { isError?: boolean; structuredContent: { brief: string; truncated: boolean } };
    expect(r.isError).not.toBe(true);
    expectBrief(r.structuredContent.brief);
    expect(r.structuredContent.truncated).toBe(true); // lists say "+N more"
    await client.close();
  });

  it('over REST (GET /api/v1/prime)', async () => {
    const res = await fetch(new URL('/api/v1/prime', http.url), { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
    expectBrief(((await res.json()) as { brief: string }).brief);
  });

  it('`baton prime` with BATON_TOKEN on the data dir, and with --url against the running hub, prints the brief as text', async () => {
    const onDir = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_TOKEN: key } });
    expect(onDir.code).toBe(0);
    expectBrief(onDir.stdout);
    if (process.env.SHOW_BRIEF !== undefined) process.stderr.write(`${onDir.stdout}\n${Buffer.byteLength(onDir.stdout)} bytes\n`);
    const overHttp = await runBaton(['prime', '--url', http.url], { env: { BATON_TOKEN: key } });
    expect(overHttp.code).toBe(0);
    expectBrief(overHttp.stdout);
    const json = await runBaton(['prime', '--data', `${t.dir}/data`, '--format', 'json'], { env: { BATON_TOKEN: key } });
    // The same brief (but for the time in its first line).
    const body = (text: string): string => text.slice(text.indexOf('\n'));
    expect(body((JSON.parse(json.stdout) as { brief: string }).brief)).toBe(body(onDir.stdout));
  });

  it('`baton prime` says who it needs when it has neither a key nor an agent name; a bad key is refused', async () => {
    const none = await runBaton(['prime', '--data', `${t.dir}/data`]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain('BATON_TOKEN');
    const bad = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_TOKEN: 'bat_' + 'x'.repeat(43) } });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('unauthenticated');
    // The key from a file (a hook's command line names the file, not the key).
    const keyFile = `${t.dir}/busy.key`;
    writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    const fromFile = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_TOKEN_FILE: keyFile } });
    expect(fromFile.code).toBe(0);
    expect(fromFile.stdout).toContain('# Baton brief for busy');
    // …or as the `.env` line `baton setup` writes.
    writeFileSync(keyFile, `# written by baton setup\nBATON_TOKEN=${key}\n`, { mode: 0o600 });
    const envLine = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_TOKEN_FILE: keyFile } });
    expect(envLine.code).toBe(0);
    expect(envLine.stdout).toContain('# Baton brief for busy');
    const missing = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_TOKEN_FILE: `${t.dir}/nope.key` } });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('cannot read the key file');
    const local = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_AGENT: 'newcomer' } });
    expect(local.code).toBe(0);
    expect(local.stdout).toContain('# Baton brief for newcomer (role worker');
    expect(local.stdout).toContain('## Tasks you hold\n- none');
    // An observer may not claim: no ready-work section in its brief.
    const observer = await runBaton(['prime', '--data', `${t.dir}/data`], { env: { BATON_AGENT: 'watcher', BATON_ROLE: 'observer' } });
    expect(observer.code).toBe(0);
    expect(observer.stdout).not.toContain('Ready tasks');
  });
});

describe('fitBrief: the bound holds whatever the text', () => {
  it('long lists shrink to "+N more"; an oversized header is cut at the bound', () => {
    const lines = Array.from({ length: 50 }, (_, i) => `${i} ${'é'.repeat(150)}`);
    const sections = Array.from({ length: 12 }, (_, i) => ({ title: `S${i}`, count: 50, lines }));
    const fitted = fitBrief(['# head'], sections);
    expect(Buffer.byteLength(fitted.text)).toBeLessThanOrEqual(PRIME_MAX_BYTES);
    expect(fitted.truncated).toBe(true);
    expect(fitted.text).toContain('+');
    const huge = fitBrief(['x'.repeat(20_000)], sections);
    expect(Buffer.byteLength(huge.text)).toBeLessThanOrEqual(PRIME_MAX_BYTES);
    const few = fitBrief(['# head'], [{ title: 'S', count: 2, lines: ['a', 'b'] }]);
    expect(few.truncated).toBe(false);
    expect(few.text).toContain('## S (2)\n- a\n- b\n');
  });
});
