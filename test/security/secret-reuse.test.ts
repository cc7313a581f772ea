import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../src/hub.js';
import { inspectDataProtection } from '../../src/security/production.js';
import { tempDir, testConfig, envScope } from '../helpers.js';

/** Env vars set for one test, restored after it. */
const env = envScope();
const setEnv = env.set;
afterEach(() => {
  env.restore();
});

async function openError(data: string): Promise<string | null> {
  try {
    const h = await Hub.open(testConfig(data, { env: 'production' }), { log: pino({ level: 'silent' }) });
    await h.close();
  } catch (err) {
    return (err as Error).message;
  }
  return null;
}

describe('production refuses one secret as both key pepper and JWT secret (item 10)', () => {
  it('refuses the same bytes, even in two encodings; distinct secrets start', async () => {
    const tmp = tempDir();
    try {
      const secret = randomBytes(36).toString('base64url'); // 48 printable bytes
      setEnv({
        BATON_KEY_PEPPER: `base64:${Buffer.from(secret).toString('base64')}`,
        BATON_JWT_SECRET: undefined,
        BATON_JWT_SECRET_FILE: undefined,
        BATON_KEY_PEPPER_FILE: undefined,
        BATON_ENCRYPTION_KEYS_FILE: undefined,
        BATON_ENCRYPTION_KEYS: `p1:${randomBytes(32).toString('base64')}`,
      });
      setEnv({ BATON_JWT_SECRET: secret });
      const same = await openError(join(tmp.dir, 'a'));
      expect(same).toMatch(/^production mode refuses to start/);
      expect(same).toMatch(/BATON_KEY_PEPPER and BATON_JWT_SECRET are the same secret/);
      expect(same).not.toContain(secret);

      setEnv({ BATON_JWT_SECRET: `base64:${randomBytes(32).toString('base64')}` });
      expect(await openError(join(tmp.dir, 'b'))).toBeNull();
    } finally {
      tmp.cleanup();
    }
  });

  it('baton doctor reports the reuse as a failing production check', () => {
    const tmp = tempDir();
    try {
      const secret = randomBytes(36).toString('base64url');
      setEnv({
        BATON_KEY_PEPPER: secret,
        BATON_JWT_SECRET: secret,
        BATON_JWT_SECRET_FILE: undefined,
        BATON_KEY_PEPPER_FILE: undefined,
        BATON_ENCRYPTION_KEYS_FILE: undefined,
        BATON_ENCRYPTION_KEYS: `p1:${randomBytes(32).toString('base64')}`,
      });
      const report = inspectDataProtection(testConfig(join(tmp.dir, 'd'), { env: 'production' }), join(tmp.dir, 'd'));
      expect(report.production.problems.join('\n')).toMatch(/BATON_KEY_PEPPER and BATON_JWT_SECRET are the same secret/);
      expect(report.ok).toBe(false);
      setEnv({ BATON_JWT_SECRET: randomBytes(36).toString('base64url') });
      const fine = inspectDataProtection(testConfig(join(tmp.dir, 'd'), { env: 'production' }), join(tmp.dir, 'd'));
      expect(fine.production.problems.join('\n')).not.toMatch(/same secret/);
    } finally {
      tmp.cleanup();
    }
  });
});
