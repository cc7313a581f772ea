import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, httpAgent, openHub, serve, type Agent, type TestHub, runBaton, type CliResult } from '../helpers.js';


const baton = (args: string[]): Promise<CliResult> => runBaton(args);

/** An OSC 52 clipboard write, an 8-bit CSI, a screen clear and a right-to-left override. */
const ATTACK = 'deploy \u001b]52;c;cm0gLXJmIH4K\u0007 \u009b2J \u001b[2J \u202eevil';
/** Anything a terminal would act on: C0 but newline, DEL, C1, bidi and line controls. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('the CLI prints stored text inert (item 10)', () => {
  let t: TestHub;
  let http: HttpHandle;
  let agent: Agent;
  let data: string;
  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    data = join(t.dir, 'data');
    agent = await httpAgent('v2', http.url, await createKey(t, 'mallory', 'lead'));
  });
  afterAll(async () => {
    await agent.close();
    await http.close();
    await t.close();
  });

  it('`baton approve` escapes an approval action that carries OSC 52 and CSI sequences', async () => {
    const { id } = await agent.ok<{ id: string }>('approval_request', { action: ATTACK, risk: 'high' });
    const out = await baton(['approve', id, '--data', data]);
    expect(out.code).toBe(0);
    expect(out.stdout).not.toMatch(RAW_CONTROL);
    expect(out.stdout).toContain('\\x1b]52;c;cm0gLXJmIH4K\\x07 \\x9b2J \\x1b[2J \\u202eevil');
    expect(out.stdout).toMatch(/^apr_\w+ granted \(high: deploy .*; requested by mallory\)\n$/);
  });

  it('op commands (pretty and --json) print valid JSON with every control escaped; the value parses back', async () => {
    await agent.ok('task_create', { tasks: [{ title: ATTACK, description: `line one\n${ATTACK}` }] });
    for (const flags of [[], ['--json']]) {
      const out = await baton(['task', 'list', '--data', data, ...flags]);
      expect(out.code).toBe(0);
      expect(out.stdout.slice(0, -1)).not.toMatch(RAW_CONTROL);
      const parsed = JSON.parse(out.stdout) as { tasks: { title: string }[] };
      expect(parsed.tasks.map((x) => x.title)).toContain(ATTACK);
    }
    const pending = await agent.ok<{ id: string }>('approval_request', { action: ATTACK, risk: 'low' });
    const listed = await baton(['approval', 'list', '--data', data]);
    expect(listed.stdout.slice(0, -1)).not.toMatch(RAW_CONTROL);
    expect(listed.stdout).toContain(pending.id);
  });

  it('error messages that echo stored or given text are escaped too', async () => {
    // The refusal quotes the flag's text back (JSON.stringify leaves C1 and bidi controls raw).
    const out = await baton(['session', 'checkpoint', '--data', data, '--summary', 's', '--metrics', ATTACK]);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('expected JSON');
    expect(out.stderr.slice(0, -1)).not.toMatch(RAW_CONTROL);
  });
});
