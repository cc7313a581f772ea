/**
 * secrets.json's first creation when another process wins the race (one `baton mcp` per agent,
 * launched together): the loser must read the winner's file, never keep or write its own. Two
 * real processes rarely interleave inside that window on a small machine, so the window is
 * opened here: the winner's file appears just before this process links its own into place.
 */
import * as realFs from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { tempDir } from '../helpers.js';

let beforeLink: ((target: string) => void) | null = null;
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof realFs>();
  return {
    ...fs,
    linkSync: (existing: string, target: string) => {
      beforeLink?.(target);
      return fs.linkSync(existing, target);
    },
  };
});
const { loadOrCreateSecrets } = await import('../../src/auth/secrets.js');

afterEach(() => {
  beforeLink = null;
});

describe('secrets.json: losing the creation race', () => {
  it('reads the winner’s file instead of its own', async () => {
    const tmp = tempDir();
    try {
      const winner = { version: 1, key_pepper: 'A'.repeat(43), jwt_secret: 'B'.repeat(43) };
      const text = JSON.stringify(winner);
      beforeLink = (target) => {
        realFs.writeFileSync(target, text);
      };
      const r = loadOrCreateSecrets(tmp.dir);
      expect(r.created).toBe(false);
      expect(r.secrets.keyPepper).toEqual(Buffer.from(winner.key_pepper, 'base64url'));
      expect(realFs.readFileSync(join(tmp.dir, 'secrets.json'), 'utf8')).toBe(text);
      // No temp file left behind.
      expect(realFs.readdirSync(tmp.dir)).toEqual(['secrets.json']);
    } finally {
      tmp.cleanup();
    }
  });
});
