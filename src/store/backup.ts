import { createCipheriv, createDecipheriv, createHash, randomBytes, scryptSync } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { BatonError } from '../core/errors.js';
import type { Db, Executor } from './db.js';
import { LATEST_MIGRATION, schemaVersion } from './health.js';
import { rows, sql, trusted, type Sql } from './sql.js';
import { SECRET_FILES } from './open.js';

/**
 * `baton backup` (S33): a Baton-format dump of every table, taken in ONE read (SQLite: one read
 * transaction, a WAL snapshot; PostgreSQL: one REPEATABLE READ transaction), so the hub keeps
 * serving while it runs and the dump is one consistent point in time. No external binary
 * (pg_dump, sqlite3): the same dump restores into either backend, which makes it the SQLite →
 * PostgreSQL migration path too.
 *
 * The file: a magic line, a JSON header line (cipher, KDF parameters, IV; no secret), then
 * AES-256-GCM ciphertext of the gzipped payload and its 16-byte tag. The header is the GCM
 * additional data, so changing any byte of the file fails the tag. The key is derived with
 * scrypt from a passphrase the operator keeps apart from the backup (`--key-file`), never from
 * the hub's own secrets: those are inside the backup, and a backup that needs the lost machine
 * to open it restores nothing. Inside, a manifest holds each table's row count and SHA-256,
 * checked again on verify and restore.
 *
 * The dump is held in memory (a few hundred MB of rows at most for the hubs Baton targets);
 * streaming is a later step.
 */

export const BACKUP_MAGIC = 'BATON-BACKUP 1\n';
const FORMAT = 1;
const TAG_BYTES = 16;
/** scrypt cost: N = 2^15 takes ~100 ms and 32 MiB on this machine; a guessing attacker pays the same per try. */
const KDF = { N: 1 << 15, r: 8, p: 1 } as const;
const MIN_PASSPHRASE = 16;

interface Table {
  readonly name: string;
  /** Column list: a fixed literal (S17), in the order rows are dumped. */
  readonly cols: Sql;
  readonly from: Sql;
  /** A column referring to another row of the same table: parents are inserted first. */
  readonly parent?: string;
  /** The generated-id column whose ids must continue after the restored rows (Dialect.continueIds). */
  readonly identity?: 'id' | 'seq';
}

/**
 * Every table but `schema_migrations` (the target migrates itself), parents before children
 * (foreign keys are checked per statement on PostgreSQL). A test compares this list with the
 * live schema, so a migration that adds a table or a column cannot be left out of backups.
 */
export const TABLES: readonly Table[] = [
  { name: 'projects', cols: trusted('id, name, created_at'), from: trusted('projects') },
  { name: 'agents', cols: trusted('id, project_id, name, kind, role, capabilities, last_seen_at, created_at'), from: trusted('agents') },
  {
    name: 'tokens',
    cols: trusted('id, project_id, name, role, server_admin, key_hash, prefix, created_by, created_at, expires_at, revoked_at, last_used_at, allowed_addresses, tools'),
    from: trusted('tokens'),
  },
  { name: 'refresh_tokens', cols: trusted('token_hash, family_id, token_id, created_at, expires_at, used_at, revoked_at'), from: trusted('refresh_tokens') },
  { name: 'web_sessions', cols: trusted('id_hash, token_id, csrf, created_at, last_seen_at, expires_at'), from: trusted('web_sessions') },
  { name: 'external_identities', cols: trusted('issuer, subject, project_id, agent_id, created_at'), from: trusted('external_identities') },
  {
    name: 'tasks',
    cols: trusted(
      'id, project_id, title, description, priority, labels, capabilities, caps_count, parent_id, context, assignee_agent, assignee_role, status, deps_open, attempts, max_attempts, available_at, lease_owner, lease_token, lease_expires_at, result, last_error, needs_approval, idempotency_key, created_by, created_at, updated_at, claimed_at, started_at, finished_at, version, finish_owner, finish_token, finish_op, finish_answer',
    ),
    from: trusted('tasks'),
    parent: 'parent_id',
  },
  { name: 'task_deps', cols: trusted('task_id, depends_on'), from: trusted('task_deps') },
  { name: 'task_caps', cols: trusted('task_id, cap'), from: trusted('task_caps') },
  { name: 'task_finishes', cols: trusted('task_id, token, owner, op, answer'), from: trusted('task_finishes') },
  { name: 'plans', cols: trusted('project_id, goal, body, version, updated_by, updated_at'), from: trusted('plans') },
  {
    name: 'events',
    cols: trusted('id, project_id, type, subject, actor, data, created_at, audience'),
    from: trusted('events'),
    identity: 'id',
  },
  { name: 'event_horizon', cols: trusted('project_id, pruned_through'), from: trusted('event_horizon') },
  {
    name: 'audit',
    cols: trusted('id, at, request_id, project_id, principal, role, op, target, outcome, code, params, transport, address, severity, event, hash, chain, seq'),
    from: trusted('audit'),
    identity: 'id',
  },
  { name: 'audit_chains', cols: trusted('chain, seq, hash, mac, anchor_seq, anchor_hash, anchor_mac, swept_at'), from: trusted('audit_chains') },
  { name: 'audit_anchor', cols: trusted('id, last_id, hash, swept_at, mac'), from: trusted('audit_anchor') },
  { name: 'audit_head', cols: trusted('id, last_id, hash, mac'), from: trusted('audit_head') },
  { name: 'deferred_marks', cols: trusted('key'), from: trusted('deferred_marks') },
  { name: 'clock_offsets', cols: trusted('boot, offset_ms'), from: trusted('clock_offsets') },
  {
    name: 'messages',
    cols: trusted(
      'seq, id, project_id, thread_id, reply_to, sender_id, sender_name, to_kind, to_names, to_role, visibility, subject, body, importance, ack_required, created_at',
    ),
    from: trusted('messages'),
    identity: 'seq',
  },
  { name: 'message_recipients', cols: trusted('agent_id, seq, read_at, acked_at'), from: trusted('message_recipients') },
  { name: 'memory', cols: trusted('project_id, owner, key, version, size, updated_by, updated_at, expires_at, value'), from: trusted('memory') },
  { name: 'discoveries', cols: trusted('id, project_id, content, tags, task_ids, files, author, created_at'), from: trusted('discoveries') },
  { name: 'discovery_tags', cols: trusted('discovery_id, project_id, tag'), from: trusted('discovery_tags') },
  { name: 'decisions', cols: trusted('id, project_id, what, why, alternatives, task_id, author, created_at'), from: trusted('decisions') },
  {
    name: 'approvals',
    cols: trusted('id, project_id, action, details, risk, task_id, status, requested_by, requester_id, decided_by, decided_at, reason, created_at'),
    from: trusted('approvals'),
  },
  { name: 'locks', cols: trusted('id, project_id, agent_id, agent_name, mode, paths, reason, task_id, created_at, expires_at'), from: trusted('locks') },
  { name: 'sessions', cols: trusted('id, project_id, agent_id, status, goal, summary, checkpoints, started_at, ended_at'), from: trusted('sessions') },
  { name: 'session_checkpoints', cols: trusted('session_id, seq, at, summary, completed, metrics, commit_sha'), from: trusted('session_checkpoints') },
  {
    name: 'handoffs',
    cols: trusted(
      'id, project_id, session_id, from_agent_id, from_name, to_kind, to_agent_id, to_name, to_role, summary, next_goals, leases, memory_keys, files, status, created_at, accepted_by, accepted_name, accepted_at',
    ),
    from: trusted('handoffs'),
  },
];

/** Rows the migrations themselves insert (the audit chain's genesis): replaced by the backup's. */
const SEEDED = new Set(['audit_anchor', 'audit_head']);

export const columnsOf = (t: Table): string[] => t.cols.parts[0]!.split(', ');

type Cell = string | number | null;

export interface TableManifest {
  readonly name: string;
  readonly rows: number;
  /** SHA-256 (hex) of the table's rows as serialized in the payload. */
  readonly sha256: string;
}

export interface Manifest {
  readonly format: number;
  readonly created_at: number;
  readonly backend: 'sqlite' | 'postgres';
  readonly schema_version: number;
  readonly tables: readonly TableManifest[];
  /** Data-dir files carried along (the hub's secrets), by name, with their SHA-256. */
  readonly files: readonly { readonly name: string; readonly sha256: string }[];
}

interface Payload {
  manifest: Manifest;
  tables: Record<string, { columns: string[]; rows: Cell[][] }>;
  /** name → base64 content. */
  files: Record<string, string>;
}

export interface BackupContents {
  readonly manifest: Manifest;
  readonly tables: ReadonlyMap<string, { columns: readonly string[]; rows: readonly Cell[][] }>;
  readonly files: ReadonlyMap<string, Buffer>;
}

interface Header {
  format: number;
  cipher: 'aes-256-gcm';
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  iv: string;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

function invalid(message: string): BatonError {
  return new BatonError('invalid_input', message);
}

function deriveKey(passphrase: string, salt: Buffer, kdf: { N: number; r: number; p: number }): Buffer {
  return scryptSync(passphrase, salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r });
}

/** The passphrase rules: long enough that scrypt is not the only thing between a thief and the data. */
export function checkPassphrase(passphrase: string): string {
  if (passphrase.length < MIN_PASSPHRASE) {
    throw invalid(`the backup key must be at least ${MIN_PASSPHRASE} characters (e.g. \`openssl rand -base64 32 > backup.key\`)`);
  }
  return passphrase;
}

/** Reads every table in one consistent read. */
export async function dumpTables(db: Db): Promise<{ version: number; tables: Payload['tables'] }> {
  return db.read(async (ex) => {
    const version = await schemaVersion(ex);
    const tables: Payload['tables'] = {};
    for (const t of TABLES) {
      const columns = columnsOf(t);
      const found = await ex.all<Record<string, Cell>>(sql`SELECT ${t.cols} FROM ${t.from}`);
      tables[t.name] = { columns, rows: found.map((r) => columns.map((c) => r[c] ?? null)) };
    }
    return { version, tables };
  });
}

/** A whole backup file: the dump of `db` plus the data-dir `files`, encrypted under `passphrase`. */
export async function createBackup(db: Db, passphrase: string, files: ReadonlyMap<string, Buffer>, now = Date.now()): Promise<{ bytes: Buffer; manifest: Manifest }> {
  checkPassphrase(passphrase);
  const { version, tables } = await dumpTables(db);
  if (version !== LATEST_MIGRATION) {
    throw new BatonError('unavailable', `the store is at schema version ${version}, this Baton expects ${LATEST_MIGRATION}: run \`baton migrate\` first`);
  }
  const manifest: Manifest = {
    format: FORMAT,
    created_at: now,
    backend: db.profile.name,
    schema_version: version,
    tables: TABLES.map((t) => ({ name: t.name, rows: tables[t.name]!.rows.length, sha256: sha256(JSON.stringify(tables[t.name])) })),
    files: [...files].map(([name, content]) => ({ name, sha256: sha256(content) })),
  };
  const payload: Payload = { manifest, tables, files: Object.fromEntries([...files].map(([n, c]) => [n, c.toString('base64')])) };
  const plain = gzipSync(Buffer.from(JSON.stringify(payload), 'utf8'));
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const header: Header = { format: FORMAT, cipher: 'aes-256-gcm', kdf: { name: 'scrypt', ...KDF, salt: salt.toString('base64') }, iv: iv.toString('base64') };
  const headerLine = Buffer.from(`${JSON.stringify(header)}\n`, 'utf8');
  const cipher = createCipheriv('aes-256-gcm', deriveKey(passphrase, salt, KDF), iv);
  cipher.setAAD(headerLine);
  const body = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  return { bytes: Buffer.concat([Buffer.from(BACKUP_MAGIC, 'utf8'), headerLine, body]), manifest };
}

/**
 * Decrypts and checks a backup file: the GCM tag (any changed byte, or the wrong key), then the
 * manifest (every table present with its row count and hash). Throws `invalid_input` saying
 * which check failed; never returns a partly checked backup.
 */
export function openBackup(bytes: Buffer, passphrase: string): BackupContents {
  const magic = Buffer.from(BACKUP_MAGIC, 'utf8');
  if (bytes.length < magic.length || !bytes.subarray(0, magic.length).equals(magic)) throw invalid('not a Baton backup file (no BATON-BACKUP header)');
  const nl = bytes.indexOf(0x0a, magic.length);
  if (nl < 0 || nl - magic.length > 4096) throw invalid('the backup header is damaged');
  const headerLine = bytes.subarray(magic.length, nl + 1);
  let header: Header;
  try {
    header = JSON.parse(headerLine.toString('utf8')) as Header;
  } catch {
    throw invalid('the backup header is damaged');
  }
  const { kdf } = header;
  if (
    header.format !== FORMAT ||
    header.cipher !== 'aes-256-gcm' ||
    typeof kdf !== 'object' ||
    kdf === null ||
    kdf.name !== 'scrypt' ||
    ![kdf.N, kdf.r, kdf.p].every((n) => Number.isInteger(n) && n > 0) ||
    // Bounds before any work: a crafted header must not make scrypt take gigabytes (≤ 256 MiB here).
    kdf.N > 1 << 18 ||
    kdf.r > 16 ||
    kdf.p > 4 ||
    128 * kdf.N * kdf.r > 256 * 1024 * 1024 ||
    typeof kdf.salt !== 'string' ||
    typeof header.iv !== 'string'
  ) {
    throw invalid('the backup header is damaged or from an unknown format version');
  }
  const body = bytes.subarray(nl + 1);
  if (body.length < TAG_BYTES) throw invalid('the backup is truncated');
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', deriveKey(passphrase, Buffer.from(kdf.salt, 'base64'), kdf), Buffer.from(header.iv, 'base64'));
    decipher.setAAD(headerLine);
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    plain = Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]);
  } catch {
    throw invalid('the backup failed its integrity check: it was changed or truncated, or the key is wrong');
  }
  let payload: Payload;
  try {
    payload = JSON.parse(gunzipSync(plain).toString('utf8')) as Payload;
  } catch {
    throw invalid('the backup passed its integrity check but its content cannot be read');
  }
  const { manifest } = payload;
  const tables = new Map<string, { columns: string[]; rows: Cell[][] }>();
  for (const t of manifest.tables) {
    const data = payload.tables[t.name];
    if (data === undefined || data.rows.length !== t.rows || sha256(JSON.stringify(data)) !== t.sha256) {
      throw invalid(`the backup's table ${t.name} does not match its manifest`);
    }
    tables.set(t.name, data);
  }
  const files = new Map<string, Buffer>();
  for (const f of manifest.files) {
    // Restore writes each file into the data dir by this name: only the hub's own secret files.
    if (!(SECRET_FILES as readonly string[]).includes(f.name)) throw invalid(`the backup holds a file Baton does not restore (${JSON.stringify(f.name).slice(0, 80)})`);
    const content = payload.files[f.name];
    if (content === undefined || sha256(Buffer.from(content, 'base64')) !== f.sha256) throw invalid(`the backup's file ${f.name} does not match its manifest`);
    files.set(f.name, Buffer.from(content, 'base64'));
  }
  return { manifest, tables, files };
}

/** A backup restores only into the schema version it was made at (its rows have that version's columns). */
export function assertRestorable(manifest: Manifest): void {
  if (manifest.schema_version !== LATEST_MIGRATION) {
    throw invalid(
      `the backup is of schema version ${manifest.schema_version}, this Baton's is ${LATEST_MIGRATION}: restore it with the Baton version that made it, then upgrade`,
    );
  }
}

/** Whether the store holds any data (the audit chain's genesis rows excepted). */
export async function storeIsEmpty(ex: Executor): Promise<boolean> {
  for (const t of TABLES) {
    if (SEEDED.has(t.name)) continue;
    if ((await ex.get(sql`SELECT 1 AS x FROM ${t.from} LIMIT 1`)) !== undefined) return false;
  }
  return true;
}

/** Parents before children for a self-referencing table (tasks.parent_id). */
function parentsFirst(columns: readonly string[], rowsIn: readonly Cell[][], parent: string): Cell[][] {
  const idAt = columns.indexOf('id');
  const parentAt = columns.indexOf(parent);
  const byId = new Map(rowsIn.map((r) => [r[idAt], r]));
  const out: Cell[][] = [];
  const placed = new Set<Cell>();
  const place = (r: Cell[], depth: number): void => {
    if (placed.has(r[idAt]!)) return;
    const p = r[parentAt];
    const up = p === null || p === undefined ? undefined : byId.get(p);
    // A cycle cannot pass the foreign key anyway; the depth bound keeps a damaged dump from recursing forever.
    if (up !== undefined && depth < 10_000) place(up, depth + 1);
    placed.add(r[idAt]!);
    out.push(r);
  };
  for (const r of rowsIn) place(r, 0);
  return out;
}

/**
 * Restores `contents` into a migrated store in one write: all or nothing. Refuses a store that
 * holds data unless `force` (then its rows are deleted first, in the same transaction).
 */
export async function restoreTables(db: Db, contents: BackupContents, force: boolean): Promise<number> {
  assertRestorable(contents.manifest);
  return db.write(async (ex) => {
    if ((await schemaVersion(ex)) !== LATEST_MIGRATION) throw new BatonError('unavailable', 'the target store is not migrated');
    if (!force && !(await storeIsEmpty(ex))) {
      throw new BatonError('conflict', 'the target store already holds data: restore into an empty data dir or schema, or pass --force to replace it');
    }
    for (const t of [...TABLES].reverse()) await ex.run(sql`DELETE FROM ${t.from}`);
    let total = 0;
    for (const t of TABLES) {
      const data = contents.tables.get(t.name);
      if (data === undefined) throw invalid(`the backup has no table ${t.name}`);
      const want = columnsOf(t);
      if (data.columns.join(',') !== want.join(',')) throw invalid(`the backup's table ${t.name} has other columns than this Baton's`);
      const list = t.parent === undefined ? data.rows : parentsFirst(want, data.rows, t.parent);
      // Bound parameters per statement under SQLite's oldest limit (999).
      const per = Math.max(1, Math.floor(900 / want.length));
      for (let i = 0; i < list.length; i += per) {
        await ex.run(sql`INSERT INTO ${t.from} (${t.cols}) VALUES ${rows(list.slice(i, i + per))}`);
      }
      const next = t.identity === undefined ? null : ex.dialect.continueIds(t.from, t.name, t.identity);
      if (next !== null) await ex.get(next);
      total += list.length;
    }
    return total;
  });
}
