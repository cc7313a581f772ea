/**
 * secrets.json's first creation across processes started at the same moment (one `baton mcp` per
 * agent, launched together by a client): exactly one process creates it, every process ends up
 * with the same secrets. Child processes over dist/ (`npm run build` first).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers.js';

const run = promisify(execFile);
const SECRETS = join(import.meta.dirname, '../../dist/auth/secrets.js');

describe('secrets.json: concurrent first creation', () => {
  it('one creator, one set of secrets, in every round', async () => {
    for (let round = 0; round < 3; round++) {
      const tmp = tempDir();
      try {
        // Each child waits for the same wall-clock instant, then creates or reads.
        const at = Date.now() + 400;
        const script = `
          const { loadOrCreateSecrets } = await import(${JSON.stringify(SECRETS)});
          while (Date.now() < ${at}) {}
          const r = loadOrCreateSecrets(${JSON.stringify(tmp.dir)});
          console.log(JSON.stringify({ created: r.created, pepper: r.secrets.keyPepper.toString('hex'), jwt: r.secrets.jwtSecret.toString('hex') }));`;
        const outs = await Promise.all(
          Array.from({ length: 8 }, () =>
            run(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 }).then(
              (r) => JSON.parse(r.stdout) as { created: boolean; pepper: string; jwt: string },
            ),
          ),
        );
        expect(outs.filter((o) => o.created)).toHaveLength(1);
        expect(new Set(outs.map((o) => o.pepper)).size).toBe(1);
        expect(new Set(outs.map((o) => o.jwt)).size).toBe(1);
      } finally {
        tmp.cleanup();
      }
    }
  });
});
