/**
 * S37: the container files, checked as text (no Docker daemon is reachable where the tests run,
 * and no base image can be pulled: the image itself is not built here). The runtime stage runs
 * as a non-root user with a curl-free HEALTHCHECK and the data volume; no secret is baked into
 * the image or the compose file; the build context leaves out data dirs and secrets.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const read = (name: string): string => readFileSync(join(ROOT, name), 'utf8');

/** Instructions of a Dockerfile: continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const joined = text
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\S+)\s*(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), args: m[2]! };
    });
}

describe('container image (S37)', () => {
  const all = instructions(read('Dockerfile'));
  const lastFrom = all.map((i) => i.op).lastIndexOf('FROM');
  const runtime = all.slice(lastFrom);

  it('is multi-stage; the runtime stage has no compiler toolchain step and copies only the build output', () => {
    expect(all.filter((i) => i.op === 'FROM').length).toBeGreaterThanOrEqual(2);
    expect(runtime.some((i) => i.op === 'COPY' && /--from=build\s+\S*dist/.test(i.args))).toBe(true);
    expect(runtime.filter((i) => i.op === 'RUN').every((i) => !/npm (ci|install)|apt-get/.test(i.args))).toBe(true);
  });

  it('runs as a non-root user, with /data as its volume and a HEALTHCHECK on /healthz without curl or wget', () => {
    const users = runtime.filter((i) => i.op === 'USER');
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.args.split(':')[0]!;
    expect(['root', '0', '']).not.toContain(user);
    expect(runtime.some((i) => i.op === 'VOLUME' && i.args.includes('/data'))).toBe(true);
    const health = runtime.find((i) => i.op === 'HEALTHCHECK');
    expect(health?.args).toMatch(/\/healthz/);
    expect(health?.args).not.toMatch(/\b(curl|wget)\b/);
    expect(runtime.some((i) => i.op === 'ENV' && /BATON_DATA=\/data/.test(i.args))).toBe(true);
  });

  it('bakes no secret into the image or the compose file', () => {
    // A key whose name says secret, given a literal value (not a /run/secrets file, not ${VAR} from .env).
    const secretish = /(?:^|\s)[A-Z_]*(PEPPER|SECRET|PASSWORD|ENCRYPTION_KEYS|TOKEN|DATABASE_URL)[A-Z_]*\s*[=:]\s*(?!\/run\/secrets\/)(?!\$\{)(?!postgres:\/\/baton:\$\{POSTGRES_PASSWORD)\S/m;
    for (const i of all) {
      if (i.op === 'ENV' || i.op === 'ARG') expect(i.args).not.toMatch(secretish);
    }
    const compose = read('docker-compose.yml')
      .split('\n')
      .filter((l) => !l.trimStart().startsWith('#'))
      .join('\n');
    expect(compose).not.toMatch(secretish);
    // The read-only root filesystem and the writable tmpfs the hub needs with it.
    expect(compose).toMatch(/read_only: true/);
    expect(compose).toMatch(/tmpfs:\s*\n\s*- \/tmp/);
    expect(compose.match(/^ {2}hub-\d+:/gm)?.length).toBe(2);
  });

  it('keeps data dirs, databases and secrets out of the build context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['.baton', '**/*.db', '.env', 'deploy/secrets', 'node_modules', '.git']) expect(ignored).toContain(entry);
  });
});
