import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessTokens } from '../../src/auth/jwt.js';
import { accessFamilyLive, newFamilyId } from '../../src/auth/refresh.js';
import { insertRefresh, revokeFamily } from '../../src/store/auth.js';
import { openHub, type TestHub } from '../helpers.js';

/** The parts of "an access token dies with its refresh family" that live in auth/ and store/. */
describe('access token family claim', () => {
  const now = Date.UTC(2026, 0, 1);
  const tokens = new AccessTokens(randomBytes(32), { issuer: 'baton', audience: 'baton', ttlMs: 60_000 });
  const base = { sub: `agt_${'a'.repeat(26)}`, tid: `tok_${'b'.repeat(26)}`, role: 'worker', prj: `prj_${'c'.repeat(26)}` };

  it('is signed and verified when given, absent when not', async () => {
    const fam = newFamilyId();
    expect(fam).toMatch(/^fam_[a-z2-7]{26}$/);
    const withFam = await tokens.sign({ ...base, fam }, now);
    expect(await tokens.verify(withFam.token, now)).toEqual({ ...base, fam });
    const without = await tokens.sign(base, now);
    expect(await tokens.verify(without.token, now)).toEqual(base);
  });

  it('a malformed family claim is refused like any bad token', async () => {
    const bad = await tokens.sign({ ...base, fam: 'fam_../../x' }, now);
    await expect(tokens.verify(bad.token, now)).rejects.toMatchObject({ code: 'unauthenticated' });
  });
});

describe('accessFamilyLive against a real store', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await openHub();
  });
  afterAll(async () => {
    await t.close();
  });

  it('is true while a family has an unrevoked token (spent ones included), false once revoked or unknown', async () => {
    const fam = newFamilyId();
    const other = newFamilyId();
    const tokenId = t.admin.tokenId!;
    await t.hub.db.write(async (ex) => {
      for (const [i, f] of [fam, fam, other].entries()) {
        await insertRefresh(ex, { token_hash: `h${i}`, family_id: f, token_id: tokenId, created_at: 0, expires_at: 1 });
      }
    });
    const live = (f?: string): Promise<boolean> => t.hub.db.read((ex) => accessFamilyLive(ex, f === undefined ? {} : { fam: f }));
    expect(await live(fam)).toBe(true);
    expect(await live(undefined)).toBe(true); // a token issued without a family: only its key decides
    await t.hub.db.write((ex) => revokeFamily(ex, fam, 5));
    expect(await live(fam)).toBe(false);
    expect(await live(other)).toBe(true);
    expect(await live(newFamilyId())).toBe(false);
  });
});
