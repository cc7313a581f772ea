import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';
import type { HttpHandle } from '../../src/api/http/server.js';

describe('smoke', () => {
  let t: TestHub;
  let http: HttpHandle;
  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  for (const line of ['v1', 'v2', 'v2-modern'] as const) {
    it(`${line} client lists and calls`, async () => {
      const key = await createKey(t, `w-${line}`, 'worker');
      const a = await httpAgent(line, http.url, key);
      const tools = await a.tools();
      expect(tools.map((x) => x.name)).toContain('task_claim');
      const me = await a.ok<{ agent: { name: string } }>('whoami');
      expect(me.agent.name).toBe(`w-${line}`);
      console.log(line, a.protocolVersion());
      await a.close();
    });
  }
});
