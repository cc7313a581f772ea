import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

/**
 * Item 10: revoking a refresh family (a spent refresh token presented again: the chain leaked)
 * must kill the access tokens issued from that family, not only future refreshes. Over REST
 * against a running hub.
 *
 * Needs the wiring in src/api/http/auth-routes.ts (sign with `fam`) and src/hub.ts (check
 * `accessFamilyLive`), files this change may not edit: enabled once that lands (see the H7 report).
 */

interface Pair {
  access_token: string;
  refresh_token: string;
}

describe('access tokens die with their refresh family (item 10)', () => {
  let t: TestHub;
  let h: HttpHandle;
  let key: string;
  beforeAll(async () => {
    t = await openHub();
    h = await serve(t.hub);
    key = await createKey(t, 'family-worker', 'worker');
  });
  afterAll(async () => {
    await h.close();
    await t.close();
  });
  const post = async (path: string, init: { key?: string; body?: unknown }): Promise<{ status: number; body: Record<string, unknown> }> => {
    const r = await fetch(new URL(path, h.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(init.key === undefined ? {} : { authorization: `Bearer ${init.key}` }) },
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  const whoami = async (access: string): Promise<number> =>
    (await fetch(new URL('/api/v1/whoami', h.url), { headers: { authorization: `Bearer ${access}` } })).status;

  it('reuse of a spent refresh token revokes the family and every access token issued from it; other families live on', async () => {
    const first = (await post('/api/v1/auth/token', { key })).body as unknown as Pair;
    const other = (await post('/api/v1/auth/token', { key })).body as unknown as Pair;
    // The attacker refreshes with a stolen token first and holds a fresh access token.
    const stolen = await post('/api/v1/auth/refresh', { body: { refresh_token: first.refresh_token } });
    expect(stolen.status).toBe(200);
    const attacker = stolen.body as unknown as Pair;
    expect(await whoami(attacker.access_token)).toBe(200);
    expect(await whoami(first.access_token)).toBe(200);

    // The legitimate holder presents the (now spent) token: the family is revoked.
    expect((await post('/api/v1/auth/refresh', { body: { refresh_token: first.refresh_token } })).status).toBe(401);
    expect(await whoami(attacker.access_token)).toBe(401);
    expect(await whoami(first.access_token)).toBe(401);
    expect((await post('/api/v1/auth/refresh', { body: { refresh_token: attacker.refresh_token } })).status).toBe(401);

    // Another family of the same key, and the key itself, are untouched.
    expect(await whoami(other.access_token)).toBe(200);
    expect(await whoami(key)).toBe(200);
    // The token carries its family; a forged claim would break the signature.
    const claims = JSON.parse(Buffer.from(other.access_token.split('.')[1]!, 'base64url').toString()) as { fam?: string };
    expect(claims.fam).toMatch(/^fam_[a-z2-7]{26}$/);
  });
});
