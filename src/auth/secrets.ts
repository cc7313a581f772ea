import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * Server secrets, created on first start in the data dir (file mode 0600). The key pepper keys
 * the API-key hashes. Issue-level security work adds env/`*_FILE` sources and production checks.
 */
const SecretsFile = z
  .object({
    version: z.literal(1),
    key_pepper: z.string().regex(/^[A-Za-z0-9_-]{43,}$/),
  })
  .strict();

export interface Secrets {
  keyPepper: Buffer;
}

export function loadOrCreateSecrets(dataDir: string): { secrets: Secrets; created: boolean } {
  const file = join(dataDir, 'secrets.json');
  if (!existsSync(file)) {
    // Written aside, then linked into place: link fails if another process won the race, and
    // nobody ever reads a half-written file.
    const body = { version: 1 as const, key_pepper: randomBytes(32).toString('base64url') };
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    try {
      linkSync(tmp, file);
      return { secrets: { keyPepper: Buffer.from(body.key_pepper, 'base64url') }, created: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new Error(`${file} is not valid JSON; restore it from a backup (keys issued with it depend on it)`);
  }
  const result = SecretsFile.safeParse(parsed);
  if (!result.success) throw new Error(`${file} is malformed; restore it from a backup`);
  return { secrets: { keyPepper: Buffer.from(result.data.key_pepper, 'base64url') }, created: false };
}
