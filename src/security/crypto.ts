import { BatonError } from '../core/errors.js';
import { createCipheriv, createDecipheriv, randomBytes, randomFillSync } from 'node:crypto';
import { existsSync, linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * Encryption at rest (S32): AES-256-GCM for every content field (agents' text: messages, memory,
 * handoffs, task text and results, the plan, discoveries, decisions, approvals, lock reasons,
 * sessions and checkpoints; the list is `AAD` below and docs/SECURITY.md). A sealed value is one
 * string:
 *
 *   enc:v1:<key id>:<base64url iv (12 bytes)>:<base64url ciphertext ‖ tag (16 bytes)>
 *
 * The additional authenticated data binds a value to its row and column (see `aad`), so a value
 * copied into another row or column fails to open. Keys live in a keyring (the first key seals;
 * every key opens the values it sealed, found by the key id in the value).
 */
export const SEALED_PREFIX = 'enc:v1:';
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const B64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

export interface KeyringKey {
  id: string;
  key: Buffer;
}

export type KeyringSource = 'env' | 'env_file' | 'data_file' | 'none';

export interface Keyring {
  keys: KeyringKey[];
  source: KeyringSource;
  /** The file the keys came from (env_file or data_file). */
  path?: string;
}

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

/** The keyring file in the data dir (development; `baton keys rotate` creates and extends it). */
export const KEYRING_FILE = 'keyring.json';

const KeyringFile = z
  .object({
    version: z.literal(1),
    keys: z
      .array(z.object({ id: z.string().regex(KEY_ID), key: z.string().regex(B64), created_at: z.string() }).strict())
      .min(1)
      .max(100),
  })
  .strict();

function decodeKey(id: string, b64: string, where: string): Buffer {
  if (!KEY_ID.test(id)) throw new KeyringError(`${where}: key id "${id}" must be 1-32 letters, digits, _ or -`);
  if (!B64.test(b64)) throw new KeyringError(`${where}: key "${id}" is not base64`);
  const key = Buffer.from(b64.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== 32) throw new KeyringError(`${where}: key "${id}" must be 32 bytes (256 bits), got ${key.length}`);
  return key;
}

/** `id:base64key,id2:base64key` (the first is current). */
export function parseKeyring(text: string, where: string): KeyringKey[] {
  const keys: KeyringKey[] = [];
  for (const part of text.split(/[,\n]/).map((s) => s.trim()).filter((s) => s !== '')) {
    const colon = part.indexOf(':');
    if (colon <= 0) throw new KeyringError(`${where}: expected id:base64key entries separated by commas`);
    const id = part.slice(0, colon);
    keys.push({ id, key: decodeKey(id, part.slice(colon + 1), where) });
  }
  if (keys.length === 0) throw new KeyringError(`${where}: no keys`);
  if (new Set(keys.map((k) => k.id)).size !== keys.length) throw new KeyringError(`${where}: duplicate key id`);
  return keys;
}

export function readKeyringFile(file: string): KeyringKey[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new KeyringError(`${file} is not valid JSON; restore it from a backup (encrypted content depends on it)`);
  }
  const r = KeyringFile.safeParse(parsed);
  if (!r.success) throw new KeyringError(`${file} is malformed; restore it from a backup`);
  const keys = r.data.keys.map((k) => ({ id: k.id, key: decodeKey(k.id, k.key, file) }));
  if (new Set(keys.map((k) => k.id)).size !== keys.length) throw new KeyringError(`${file}: duplicate key id`);
  return keys;
}

/**
 * Where the keys come from, strongest first: BATON_ENCRYPTION_KEYS, BATON_ENCRYPTION_KEYS_FILE,
 * then (development only) the keyring file in the data dir. None: encryption is off.
 */
export function loadKeyring(dataDir: string, env: NodeJS.ProcessEnv, production: boolean): Keyring {
  const inline = env.BATON_ENCRYPTION_KEYS;
  if (inline !== undefined && inline !== '') return { keys: parseKeyring(inline, 'BATON_ENCRYPTION_KEYS'), source: 'env' };
  const file = env.BATON_ENCRYPTION_KEYS_FILE;
  if (file !== undefined && file !== '') {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      throw new KeyringError(`BATON_ENCRYPTION_KEYS_FILE: cannot read ${file}`);
    }
    return { keys: parseKeyring(text, `BATON_ENCRYPTION_KEYS_FILE (${file})`), source: 'env_file', path: file };
  }
  const own = join(dataDir, KEYRING_FILE);
  if (!production && existsSync(own)) return { keys: readKeyringFile(own), source: 'data_file', path: own };
  return { keys: [], source: 'none' };
}

export function newKeyId(now: Date): string {
  return `k${now.toISOString().slice(0, 10).replace(/-/g, '')}${randomBytes(3).toString('hex')}`;
}

export function generateKeyEntry(now: Date): { id: string; key: string } {
  return { id: newKeyId(now), key: randomBytes(32).toString('base64url') };
}

/**
 * Adds a new current key to the data dir's keyring file (creating it, 0600), keeping the old
 * keys so values they sealed stay readable. Written aside and renamed into place.
 */
export function addKeyToFile(dataDir: string, now: Date): { id: string; created: boolean } {
  const file = join(dataDir, KEYRING_FILE);
  const created = !existsSync(file);
  const old = created ? [] : (JSON.parse(readFileSync(file, 'utf8')) as z.infer<typeof KeyringFile>).keys;
  if (!created) readKeyringFile(file); // validates
  const entry = generateKeyEntry(now);
  const body = { version: 1, keys: [{ ...entry, created_at: now.toISOString() }, ...old] };
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  try {
    if (created) linkSync(tmp, file);
    else renameSync(tmp, file);
  } finally {
    if (existsSync(tmp)) unlinkSync(tmp);
  }
  return { id: entry.id, created };
}

/** The row and column a sealed value belongs to. */
export function aad(...parts: string[]): string {
  return parts.map((p) => `${p.length}:${p}`).join('|');
}

export function isSealed(value: string): boolean {
  return value.startsWith(SEALED_PREFIX);
}

/** The key id of a sealed value (undefined for plaintext). */
export function keyIdOf(value: string): string | undefined {
  if (!isSealed(value)) return undefined;
  const end = value.indexOf(':', SEALED_PREFIX.length);
  return end < 0 ? undefined : value.slice(SEALED_PREFIX.length, end);
}

export class CipherError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CipherError';
  }
}

/**
 * IVs come from a pool of random bytes refilled 4 KiB at a time: `randomBytes(12)` per value cost
 * 6.3 µs of an 18 µs seal (measured on the shared dev machine), on the claim/complete path. Each
 * 12-byte slice is used once; the pool is only read synchronously inside `seal`.
 */
const IV_POOL = Buffer.alloc(4096 - (4096 % 12));
let ivAt = IV_POOL.length;

function nextIv(): Buffer {
  if (ivAt + 12 > IV_POOL.length) {
    randomFillSync(IV_POOL);
    ivAt = 0;
  }
  const iv = IV_POOL.subarray(ivAt, ivAt + 12);
  ivAt += 12;
  return iv;
}

export class Cipher {
  private byId: Map<string, Buffer>;
  private current: KeyringKey;

  /**
   * @param reload re-reads the keyring when a value names an unknown key id (another process,
   *   `baton keys rotate`, added a key to the keyring file while this one runs).
   */
  constructor(
    keys: readonly KeyringKey[],
    private readonly reload?: () => readonly KeyringKey[],
  ) {
    const first = keys[0];
    if (first === undefined) throw new CipherError('a cipher needs at least one key');
    this.current = first;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  get currentKeyId(): string {
    return this.current.id;
  }

  get keyIds(): string[] {
    return [...this.byId.keys()];
  }

  seal(plaintext: string, aadText: string): string {
    const iv = nextIv();
    const c = createCipheriv('aes-256-gcm', this.current.key, iv);
    c.setAAD(Buffer.from(aadText, 'utf8'));
    const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final(), c.getAuthTag()]);
    return `${SEALED_PREFIX}${this.current.id}:${iv.toString('base64url')}:${ct.toString('base64url')}`;
  }

  /** Opens a sealed value; plaintext (written before encryption was on) is returned as it is. */
  open(value: string, aadText: string): string {
    if (!isSealed(value)) return value;
    const parts = value.slice(SEALED_PREFIX.length).split(':');
    if (parts.length !== 3) throw new CipherError('malformed sealed value');
    const [id, ivText, ctText] = parts as [string, string, string];
    let key = this.byId.get(id);
    if (key === undefined && this.reload !== undefined) {
      for (const k of this.reload()) if (!this.byId.has(k.id)) this.byId.set(k.id, k.key);
      key = this.byId.get(id);
    }
    if (key === undefined) throw new CipherError(`no key "${id}" in the keyring`);
    const iv = Buffer.from(ivText, 'base64url');
    const ct = Buffer.from(ctText, 'base64url');
    if (iv.length !== 12 || ct.length < 16) throw new CipherError('malformed sealed value');
    try {
      const d = createDecipheriv('aes-256-gcm', key, iv);
      d.setAAD(Buffer.from(aadText, 'utf8'));
      d.setAuthTag(ct.subarray(ct.length - 16));
      return Buffer.concat([d.update(ct.subarray(0, ct.length - 16)), d.final()]).toString('utf8');
    } catch {
      throw new CipherError('sealed value failed authentication');
    }
  }

  /** Whether a stored value should be re-sealed under the current key (plaintext or an older key). */
  stale(value: string): boolean {
    return keyIdOf(value) !== this.current.id;
  }
}

/** Seal when a cipher is configured, store as is otherwise. */
export function sealWith(cipher: Cipher | undefined, value: string, aadText: string): string {
  return cipher === undefined ? value : cipher.seal(value, aadText);
}

/** Open a stored value; a sealed value without a configured cipher is an error, never shown raw. */
export function openWith(cipher: Cipher | undefined, value: string, aadText: string): string {
  if (cipher !== undefined) return cipher.open(value, aadText);
  // An operator's configuration problem (e.g. a git hook or a CLI run without the key in its
  // environment), not a fault: a clear, stable answer instead of `internal`.
  if (isSealed(value)) {
    throw new BatonError(
      'unavailable',
      'this content is encrypted and no encryption key is configured here: set BATON_ENCRYPTION_KEYS or BATON_ENCRYPTION_KEYS_FILE',
    );
  }
  return value;
}

/** Nullable columns: null stays null (an absent value is not content). */
export function sealNullable(cipher: Cipher | undefined, value: string | null, aadText: string): string | null {
  return value === null ? null : sealWith(cipher, value, aadText);
}

export function openNullable(cipher: Cipher | undefined, value: string | null, aadText: string): string | null {
  return value === null ? null : openWith(cipher, value, aadText);
}

export type TaskField = 'title' | 'description' | 'context' | 'result' | 'last_error';

/**
 * The additional data of each encrypted column: table, project, row identity, column. Every
 * content column of the schema is here; what stays in clear (ids, statuses, priorities, times,
 * labels, tags, capabilities, lock paths, hub-made answers) is listed in docs/SECURITY.md (S32).
 */
export const AAD = {
  message: (projectId: string, id: string, column: 'subject' | 'body') => aad('messages', projectId, id, column),
  memory: (projectId: string, owner: string, key: string) => aad('memory', projectId, owner, key, 'value'),
  handoff: (projectId: string, id: string, column: 'summary' | 'next_goals' | 'memory_keys' | 'files') =>
    aad('handoffs', projectId, id, column),
  task: (projectId: string, id: string, column: TaskField) => aad('tasks', projectId, id, column),
  plan: (projectId: string, column: 'goal' | 'body') => aad('plans', projectId, column),
  discovery: (projectId: string, id: string, column: 'content' | 'files') => aad('discoveries', projectId, id, column),
  decision: (projectId: string, id: string, column: 'what' | 'why' | 'alternatives') => aad('decisions', projectId, id, column),
  approval: (projectId: string, id: string, column: 'action' | 'details' | 'reason') => aad('approvals', projectId, id, column),
  lock: (projectId: string, id: string, column: 'reason') => aad('locks', projectId, id, column),
  session: (projectId: string, id: string, column: 'goal' | 'summary') => aad('sessions', projectId, id, column),
  /** Checkpoints belong to a session (ids are unique across projects); `seq` numbers them in it. */
  checkpoint: (sessionId: string, seq: number, column: 'summary' | 'completed') =>
    aad('session_checkpoints', sessionId, String(seq), column),
} as const;
