/**
 * Issue 8, items 2 and 3 (S10, S11): identities from different credential sources never merge.
 * - An external issuer's token whose `sub` equals an API-key agent's name does not become that
 *   agent (its private memory and mail stay out of reach) and does not rewrite its role.
 * - A project admin cannot become an existing agent by minting a key under its name: that takes
 *   `for_existing_agent: true`, and then only with the agent's own role.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ManualClock } from '../../src/core/clock.js';
import { call, createKey, openHub, serve, tempDir, type TestHub, runBaton, type CliResult } from '../helpers.js';

const START = Date.UTC(2026, 0, 1);
const EXT_ISS = 'https://idp.example.test';

async function http(url: string, path: string, token: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(new URL(`/api/v1${path}`, url), {
    method: init.method ?? 'GET',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await r.text();
  return { status: r.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

describe('security: identities never merge across credential sources (issue 8 items 2, 3)', () => {
  const clock = new ManualClock(START);
  let t: TestHub;
  let h: HttpHandle;
  let jwks: Server;
  let rsa: Awaited<ReturnType<typeof generateKeyPair>>;

  beforeAll(async () => {
    rsa = await generateKeyPair('RS256');
    const keys = [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }];
    jwks = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys })));
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    t = await openHub({
      clock,
      config: {
        oauthIssuer: EXT_ISS,
        oauthJwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`,
        oauthAudience: 'baton-api',
        oauthRoleClaim: 'groups',
        oauthRoleMap: ['devs=worker', 'ops=lead'],
        oauthProject: 'extproj',
      },
    });
    h = await serve(t.hub);
  });
  afterAll(async () => {
    await h.close();
    await t.close();
    jwks.close();
  });

  const ext = async (sub: string, groups: string): Promise<string> => {
    const now = Math.floor(clock.now() / 1000);
    return new SignJWT({ iss: EXT_ISS, aud: 'baton-api', iat: now, exp: now + 600, sub, groups })
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
      .sign(rsa.privateKey);
  };

  it('an external sub equal to a key agent name gets its own agent: no private memory, no mail, no role rewrite', async () => {
    const alice = await createKey(t, 'alice', 'worker', 'extproj');
    const admin = await createKey(t, 'boss', 'admin', 'extproj');
    expect((await http(h.url, '/memory', alice, { method: 'POST', body: { key: 'secret', value: 'alice-only' } })).status).toBe(200);
    const sent = await http(h.url, '/messages', admin, { method: 'POST', body: { to_agents: ['alice'], body: 'for alice', visibility: 'private' } });
    expect(sent.status).toBe(200);

    const impostor = await ext('alice', 'ops');
    const who = await http(h.url, '/whoami', impostor);
    expect(who.status).toBe(200);
    const whoJson = JSON.stringify(who.body);
    expect(whoJson).not.toMatch(/"(name|agent)":"alice"/);
    expect(whoJson).toContain('alice@ext-');
    const mem = await http(h.url, '/memory?key=secret', impostor);
    expect(JSON.stringify(mem.body)).not.toContain('alice-only');
    const inbox = await http(h.url, '/messages/inbox', impostor, { method: 'POST', body: {} });
    expect(inbox.status).toBe(200);
    expect(JSON.stringify(inbox.body)).not.toContain('for alice');

    // The key agent keeps its role and its data.
    const agents = (await http(h.url, '/agents', admin)).body.agents as { name: string; role: string }[];
    expect(agents.find((a) => a.name === 'alice')?.role).toBe('worker');
    expect(JSON.stringify((await http(h.url, '/memory?key=secret', alice)).body)).toContain('alice-only');
    expect(JSON.stringify((await http(h.url, '/messages/inbox', alice, { method: 'POST', body: {} })).body)).toContain('for alice');

    // The same subject comes back as the same (namespaced) agent; a new role from the IdP applies
    // to the call, never to the stored agent.
    const again = await http(h.url, '/whoami', await ext('alice', 'devs'));
    expect(JSON.stringify(again.body)).toContain('alice@ext-');
    const after = (await http(h.url, '/agents', admin)).body.agents as { name: string; role: string }[];
    expect(after.filter((a) => a.name.startsWith('alice')).map((a) => [a.name.split('@')[0], a.role])).toEqual([
      ['alice', 'worker'],
      ['alice', 'lead'],
    ]);
  });

  it('an external subject whose name is free is named plainly and stays linked to its issuer', async () => {
    const first = await http(h.url, '/whoami', await ext('carol', 'devs'));
    expect(JSON.stringify(first.body)).toContain('"carol"');
    // A key minted later under that name is a different credential source: refused without the flag.
    const admin = await createKey(t, 'boss2', 'admin', 'extproj');
    const minted = await http(h.url, '/tokens', admin, { method: 'POST', body: { name: 'carol', role: 'worker' } });
    expect(minted.status).toBe(409);
  });

  it('token_create refuses an existing agent unless asked explicitly, and then only with its role', async () => {
    const victim = await createKey(t, 'victim', 'worker');
    await call(t.hub, await t.hub.authenticate(victim), 'memory_set', { key: 'diary', value: 'private words' });
    // A project admin (not a server admin) tries to become the victim.
    const padminKey = await createKey(t, 'padmin', 'admin');
    const padmin = await t.hub.authenticate(padminKey);
    expect(padmin.serverAdmin).toBe(false);
    const silent = await http(h.url, '/tokens', padminKey, { method: 'POST', body: { name: 'victim', role: 'admin' } });
    expect(silent.status).toBe(409);
    expect(JSON.stringify(silent.body)).toContain('for_existing_agent');
    const otherRole = await http(h.url, '/tokens', padminKey, {
      method: 'POST',
      body: { name: 'victim', role: 'admin', for_existing_agent: true },
    });
    expect(otherRole.status).toBe(409);
    expect(JSON.stringify(otherRole.body)).toContain('same role');
    const agents = (await http(h.url, '/agents', padminKey)).body.agents as { name: string; role: string }[];
    expect(agents.find((a) => a.name === 'victim')?.role).toBe('worker');
    // Explicit, same role: allowed (a second key for the same agent, e.g. rotation).
    const explicit = await http(h.url, '/tokens', padminKey, {
      method: 'POST',
      body: { name: 'victim', role: 'worker', for_existing_agent: true },
    });
    expect(explicit.status).toBe(200);
    const second = (explicit.body as { key: string }).key;
    expect(JSON.stringify((await http(h.url, '/memory?key=diary', second)).body)).toContain('private words');
  });
});

describe('baton token create --for-existing-agent (issue 8 item 3, CLI)', () => {
  const baton = (args: string[]): Promise<CliResult> => runBaton(args, { env: process.env });

  it('refuses a second key for an existing agent without the flag or with another role', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const data = join(dir, 'data');
      expect((await baton(['init', '--data', data])).code).toBe(0);
      expect((await baton(['token', 'create', '--name', 'alice', '--role', 'worker', '--data', data])).code).toBe(0);
      const again = await baton(['token', 'create', '--name', 'alice', '--role', 'worker', '--data', data]);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toContain('conflict');
      expect(again.stderr).toContain('--for-existing-agent');
      const otherRole = await baton(['token', 'create', '--name', 'alice', '--role', 'lead', '--for-existing-agent', '--data', data]);
      expect(otherRole.code).not.toBe(0);
      expect(otherRole.stderr).toContain('same role');
      const explicit = await baton(['token', 'create', '--name', 'alice', '--role', 'worker', '--for-existing-agent', '--data', data]);
      expect(explicit.code, explicit.stderr).toBe(0);
      expect(explicit.stdout).toMatch(/^bat_/);
    } finally {
      cleanup();
    }
  });
});
