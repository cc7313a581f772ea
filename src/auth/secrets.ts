import { hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DataDirError } from '../os/datadir.js';

/**
 * Server secrets, created on first start in the data dir (file mode 0600). The key pepper keys
 * the API-key hashes. Issue-level security work adds env/`*_FILE` sources and production checks.
 */
const SecretsFile = z
  .object({
    version: z.literal(1),
    key_pepper: z.string().regex(/^[A-Za-z0-9_-]{43,}$/),
    /** Signs access tokens (HS256, 256 bits). Absent in files written before it existed. */
    jwt_secret: z.string().regex(/^[A-Za-z0-9_-]{43,}$/).optional(),
  })
  .strict();

export interface Secrets {
  keyPepper: Buffer;
  /** HS256 key of the access tokens (see `jwtSecretOf`). */
  jwtSecret: Buffer;
}

/**
 * The access-token signing secret: `jwt_secret` of secrets.json; a file written before that
 * field existed gets one derived from its key pepper (HKDF-SHA256, its own label), so every
 * process sharing the data dir agrees on it without rewriting the file. The one place that
 * decides where this secret comes from (env/`*_FILE` sources plug in here).
 */
export function jwtSecretOf(file: { key_pepper: string; jwt_secret?: string | undefined }): Buffer {
  if (file.jwt_secret !== undefined) return Buffer.from(file.jwt_secret, 'base64url');
  return Buffer.from(hkdfSync('sha256', Buffer.from(file.key_pepper, 'base64url'), Buffer.alloc(0), 'baton jwt hs256 v1', 32));
}

export function loadOrCreateSecrets(dataDir: string): { secrets: Secrets; created: boolean } {
  const file = join(dataDir, 'secrets.json');
  if (!existsSync(file)) {
    // Written aside, then linked into place: link fails if another process won the race, and
    // nobody ever reads a half-written file.
    const body = {
      version: 1 as const,
      key_pepper: randomBytes(32).toString('base64url'),
      jwt_secret: randomBytes(32).toString('base64url'),
    };
    const text = JSON.stringify(body, null, 2) + '\n';
    const made = { secrets: { keyPepper: Buffer.from(body.key_pepper, 'base64url'), jwtSecret: jwtSecretOf(body) }, created: true };
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
    let linked: boolean | 'unsupported';
    try {
      linkSync(tmp, file);
      linked = true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') linked = false;
      else if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS' || code === 'EXDEV') linked = 'unsupported';
      else throw err;
    } finally {
      unlinkSync(tmp);
    }
    if (linked === true) return made;
    if (linked === 'unsupported') {
      // No hard links here (some network and FUSE file systems): an exclusive create still lets
      // one process win; the others may read it while it is being written (see the retry below).
      try {
        writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
        return made;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
  }
  return readSecretsFile(file);
}

/** Blocks this thread for `ms` (start-up only: a secrets file another process is still writing). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** secrets.json as written by a winner of the creation race, read again for up to 1 s while it is incomplete. */
function readSecretsFile(file: string): { secrets: Secrets; created: boolean } {
  for (let attempt = 0; ; attempt++) {
    try {
      return parseSecretsFile(file);
    } catch (err) {
      if (!(err instanceof DataDirError) || attempt >= 20 || !/not valid JSON/.test(err.message)) throw err;
      pause(50);
    }
  }
}

function parseSecretsFile(file: string): { secrets: Secrets; created: boolean } {
  const restore =
    'restore it from a backup: every API key and the audit chain depend on it, so Baton never regenerates it beside an existing database';
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DataDirError(`${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): fix its owner or permissions, or ${restore}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DataDirError(`${file} is not valid JSON (damaged or overwritten); ${restore}`);
  }
  const result = SecretsFile.safeParse(parsed);
  if (!result.success) throw new DataDirError(`${file} is not a Baton secrets file (unexpected fields or values); ${restore}`);
  return {
    secrets: { keyPepper: Buffer.from(result.data.key_pepper, 'base64url'), jwtSecret: jwtSecretOf(result.data) },
    created: false,
  };
}

// ---------------------------------------------------------------- sources (S31, S36)

/** Where a secret came from: env var, the file an env `*_FILE` var names, secrets.json, or nowhere. */
export type SecretSource = 'env' | 'env_file' | 'data_file' | 'derived' | 'missing';

export interface SecretReport {
  name: 'key_pepper' | 'jwt_secret';
  /** The env var that sets it (`<NAME>_FILE` names a file holding it). */
  env: string;
  source: SecretSource;
  path?: string;
  bytes: number;
  /** Why it is too weak for production, or null. */
  weak: string | null;
}

/** Minimum secret size in production: 256 bits. */
export const MIN_SECRET_BYTES = 32;

const PLACEHOLDERS = /change.?me|changeit|example|default|password|secret|placeholder|your.?(key|secret)|dummy/i;

/** Why a secret is weak (too short, a placeholder or default, too few distinct bytes), or null. */
export function weakness(value: Buffer, text: string | null): string | null {
  if (value.length < MIN_SECRET_BYTES) return `shorter than ${MIN_SECRET_BYTES} bytes (256 bits): ${value.length} bytes`;
  if (text !== null && PLACEHOLDERS.test(text)) return 'looks like a default or placeholder value';
  if (new Set(value).size < 8) return 'too few distinct bytes to be random';
  return null;
}

class SecretSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretSourceError';
  }
}

/** An env value: `base64:`/`base64url:` prefixed values are decoded, anything else is its UTF-8 bytes. */
function decodeSecret(text: string): { value: Buffer; text: string | null } {
  const m = /^(base64|base64url):(.*)$/s.exec(text);
  if (m === null) return { value: Buffer.from(text, 'utf8'), text };
  return { value: Buffer.from(m[2]!.replace(/-/g, '+').replace(/_/g, '/'), 'base64'), text: null };
}

function fromEnv(env: NodeJS.ProcessEnv, name: string): { value: Buffer; text: string | null; source: SecretSource; path?: string } | null {
  const inline = env[name];
  if (inline !== undefined && inline !== '') return { ...decodeSecret(inline), source: 'env' };
  const file = env[`${name}_FILE`];
  if (file === undefined || file === '') return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch {
    throw new SecretSourceError(`${name}_FILE: cannot read ${file}`);
  }
  if (text === '') throw new SecretSourceError(`${name}_FILE: ${file} is empty`);
  return { ...decodeSecret(text), source: 'env_file', path: file };
}

/**
 * The server secrets and where each came from. Each secret is taken from its env var
 * (`BATON_KEY_PEPPER`, `BATON_JWT_SECRET`) or the file its `*_FILE` var names. In development
 * anything not given is read from secrets.json in the data dir, generated (0600) on first start.
 * In production nothing is generated or read from the data dir: a secret not given is reported
 * `missing` (its buffer empty) and the production checks refuse to start.
 */
export function resolveSecrets(
  dataDir: string,
  opts: {
    env: NodeJS.ProcessEnv;
    production: boolean;
    /** false: never create secrets.json (doctor); a missing file is reported `missing`. */
    create?: boolean;
    /** The database already exists: a missing secrets.json is an error, never regenerated. */
    dbExists?: boolean;
  },
): { secrets: Secrets; created: boolean; reports: SecretReport[] } {
  const pepper = fromEnv(opts.env, 'BATON_KEY_PEPPER');
  const jwt = fromEnv(opts.env, 'BATON_JWT_SECRET');
  let fileSecrets: Secrets | null = null;
  let created = false;
  const file = join(dataDir, 'secrets.json');
  let fileHasJwt = false;
  if (!opts.production && (pepper === null || jwt === null) && (opts.create !== false || existsSync(file))) {
    if (opts.dbExists === true && opts.create !== false && !existsSync(file)) {
      throw new DataDirError(
        `${file} is missing beside an existing database (${join(dataDir, 'baton.db')}). Restore secrets.json from a backup ` +
          '(or give BATON_KEY_PEPPER and BATON_JWT_SECRET). A new one would break every API key and the audit chain, so Baton does not generate it; ' +
          'to start a new hub instead, move the whole data dir aside.',
      );
    }
    const loaded = loadOrCreateSecrets(dataDir);
    fileSecrets = loaded.secrets;
    created = loaded.created;
    try {
      fileHasJwt = (JSON.parse(readFileSync(file, 'utf8')) as { jwt_secret?: string }).jwt_secret !== undefined;
    } catch {
      fileHasJwt = false;
    }
  }
  const report = (
    name: SecretReport['name'],
    env: string,
    given: ReturnType<typeof fromEnv>,
    fromFile: Buffer | undefined,
    fileSource: SecretSource,
  ): { value: Buffer; report: SecretReport } => {
    if (given !== null) {
      return {
        value: given.value,
        report: { name, env, source: given.source, ...(given.path === undefined ? {} : { path: given.path }), bytes: given.value.length, weak: weakness(given.value, given.text) },
      };
    }
    if (fromFile !== undefined) {
      return { value: fromFile, report: { name, env, source: fileSource, path: file, bytes: fromFile.length, weak: weakness(fromFile, null) } };
    }
    return { value: Buffer.alloc(0), report: { name, env, source: 'missing', bytes: 0, weak: 'missing' } };
  };
  const p = report('key_pepper', 'BATON_KEY_PEPPER', pepper, fileSecrets?.keyPepper, 'data_file');
  const j = report('jwt_secret', 'BATON_JWT_SECRET', jwt, fileSecrets?.jwtSecret, fileHasJwt ? 'data_file' : 'derived');
  return { secrets: { keyPepper: p.value, jwtSecret: j.value }, created, reports: [p.report, j.report] };
}
