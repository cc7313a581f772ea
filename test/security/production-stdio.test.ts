/**
 * S36 ("disabled auth"): in production mode `baton mcp` refuses to run as a keyless local agent.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BIN, tempDir } from '../helpers.js';

const run = promisify(execFile);
const key32 = (): string => randomBytes(32).toString('base64');

describe('S36: production mode and the keyless stdio agent', () => {
  it('refuses BATON_AGENT without BATON_TOKEN, with a clear message', async () => {
    const tmp = tempDir();
    try {
      const secrets = {
        BATON_KEY_PEPPER: `base64:${key32()}`,
        BATON_JWT_SECRET: randomBytes(48).toString('base64url'),
        BATON_ENCRYPTION_KEYS: `p1:${key32()}`,
      };
      const env = { PATH: process.env.PATH ?? '', HOME: tmp.dir, BATON_AGENT: 'local-dev', ...secrets };
      const data = join(tmp.dir, 'data');
      // The process answers the MCP handshake and refuses every request (e2e/mcp-stdio.test.ts);
      // here stdin closes at once, and it exits non-zero with the reason on stderr.
      const running = run(process.execPath, [BIN, 'mcp', '--data', data], { env: { ...env, BATON_ENV: 'production' }, timeout: 20_000 });
      running.child.stdin?.end();
      const prod = await running.then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
      );
      expect(prod.code).toBe(1);
      expect(prod.stderr).toContain('production mode requires BATON_TOKEN');
      expect(prod.stderr).not.toMatch(/at .*\.(js|ts):\d+/);
      // (Development allows it: e2e/mcp-stdio.test.ts "without a key, runs only as a named local agent".)
    } finally {
      tmp.cleanup();
    }
  });
});
