import { timingSafeEqual } from 'node:crypto';
import { mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { resolveSecrets, weakness, type SecretReport, type Secrets } from '../auth/secrets.js';
import { ConfigError, type Config } from '../config.js';
import { Cipher, KEYRING_FILE, KeyringError, loadKeyring, readKeyringFile, type Keyring } from './crypto.js';
import { describeMode, enforceModes, inspectModes, type ModeReport } from './filemodes.js';
import { isLoopbackHost } from '../core/net.js';

/**
 * Data protection at start (S31, S32, S36): file modes, secret sources, the at-rest cipher and
 * the production checks. `Hub.open` calls `openDataProtection`; `baton doctor` calls
 * `inspectDataProtection`, which changes and creates nothing.
 */

export interface TlsReport {
  configured: boolean;
  host: string;
  loopback: boolean;
  allowInsecureHttp: boolean;
}

export function tlsReport(config: Config): TlsReport {
  return {
    configured: config.tlsCert !== '' && config.tlsKey !== '',
    host: config.host,
    loopback: isLoopbackHost(config.host),
    allowInsecureHttp: config.allowInsecureHttp,
  };
}

export interface KeyringReport {
  source: Keyring['source'];
  path?: string;
  ids: string[];
  current: string | null;
  /** A keyring that could not be read (bad format, unreadable file). */
  error?: string;
  weak: string[];
}

function keyringReport(k: Keyring | KeyringError): KeyringReport {
  if (k instanceof KeyringError) return { source: 'none', ids: [], current: null, error: k.message, weak: [] };
  return {
    source: k.source,
    ...(k.path === undefined ? {} : { path: k.path }),
    ids: k.keys.map((x) => x.id),
    current: k.keys[0]?.id ?? null,
    weak: k.keys.filter((x) => weakness(x.key, null) !== null).map((x) => x.id),
  };
}

/** Every reason production mode refuses this configuration (empty: none). Each names its setting. */
export function productionProblems(
  config: Config,
  secrets: readonly SecretReport[],
  keyring: KeyringReport,
  modes: readonly ModeReport[],
): string[] {
  const problems: string[] = [];
  for (const s of secrets) {
    if (s.source === 'missing') {
      problems.push(`${s.env} is missing: set ${s.env} or ${s.env}_FILE (at least 32 random bytes; production never generates secrets)`);
    } else if (s.source === 'data_file' || s.source === 'derived') {
      problems.push(`${s.env} comes from the data dir: set ${s.env} or ${s.env}_FILE`);
    } else if (s.weak !== null) {
      problems.push(`${s.env} is weak: ${s.weak}`);
    }
  }
  if (keyring.error !== undefined) problems.push(`BATON_ENCRYPTION_KEYS is invalid: ${keyring.error}`);
  else if (keyring.source === 'none' || keyring.source === 'data_file') {
    problems.push(
      'BATON_ENCRYPTION_KEYS is missing: production encrypts content at rest; set BATON_ENCRYPTION_KEYS or BATON_ENCRYPTION_KEYS_FILE (id:base64 of 32 random bytes, comma-separated, current first)',
    );
  } else if (keyring.weak.length > 0) {
    problems.push(`BATON_ENCRYPTION_KEYS is weak: key(s) ${keyring.weak.join(', ')} are not random 32-byte keys`);
  }
  if (config.metricsToken !== '') {
    const weak = weakness(Buffer.from(config.metricsToken, 'utf8'), config.metricsToken);
    if (weak !== null) problems.push(`metricsToken (BATON_METRICS_TOKEN) is weak: ${weak}`);
  }
  const tls = tlsReport(config);
  if (!tls.loopback && !tls.configured) {
    problems.push(
      `host ${config.host} is beyond loopback without TLS: set tlsCert and tlsKey (BATON_TLS_CERT, BATON_TLS_KEY), or bind 127.0.0.1 behind a TLS proxy` +
        (tls.allowInsecureHttp ? ' (allowInsecureHttp is not honoured in production)' : ''),
    );
  }
  for (const m of modes) if (!m.ok) problems.push(`refused (production mode): ${describeMode(m)}; run chmod ${m.want} on it`);
  return problems;
}

/**
 * Production refuses one secret in two roles: the key pepper (API-key and refresh-token hashes)
 * and the JWT secret (access-token signatures) must be independent, so a leak or a forced
 * rotation of one leaves the other standing. Compared as bytes (after decoding), so the same
 * value given in two encodings is still one secret. For start-up and for `baton doctor`.
 */
export function secretReuseProblems(secrets: Secrets): string[] {
  const a = secrets.keyPepper;
  const b = secrets.jwtSecret;
  if (a.length > 0 && a.length === b.length && timingSafeEqual(a, b)) {
    return ['BATON_KEY_PEPPER and BATON_JWT_SECRET are the same secret: give each its own (at least 32 random bytes)'];
  }
  return [];
}

export interface DataProtection {
  secrets: Secrets;
  created: boolean;
  cipher: Cipher | undefined;
}

function tryKeyring(dataDir: string, env: NodeJS.ProcessEnv, production: boolean): Keyring | KeyringError {
  try {
    return loadKeyring(dataDir, env, production);
  } catch (err) {
    if (err instanceof KeyringError) return err;
    throw err;
  }
}

/**
 * At start: file modes (development: fixed with a warning; production: refused), secrets (env,
 * `*_FILE`, or in development secrets.json, generated on first start), the production checks
 * (all problems in one message), and the cipher (on whenever a keyring is configured).
 */
export function openDataProtection(
  config: Config,
  dataDir: string,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): DataProtection {
  const production = config.env === 'production';
  process.umask(0o077);
  const modes = enforceModes(dataDir, production);
  for (const m of modes.fixed) {
    log.warn({ path: m.path, was: m.mode, now: m.want }, `fixed (development mode): ${describeMode(m)}; set to ${m.want}`);
  }
  if (!existsSync(dataDir)) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const keyring = tryKeyring(dataDir, env, production);
  if (!production && keyring instanceof KeyringError) throw new ConfigError(keyring.message);
  // Secrets are generated only together with a new database (development mode).
  const dbExists = existsSync(join(dataDir, 'baton.db'));
  const { secrets, created, reports } = resolveSecrets(dataDir, { env, production, dbExists });
  if (production) {
    const problems = [...productionProblems(config, reports, keyringReport(keyring), modes.refused), ...secretReuseProblems(secrets)];
    if (problems.length > 0) {
      throw new ConfigError(`production mode refuses to start:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    }
  }
  let cipher: Cipher | undefined;
  if (!(keyring instanceof KeyringError) && keyring.keys.length > 0) {
    const file = keyring.source === 'data_file' ? join(dataDir, KEYRING_FILE) : undefined;
    // A key added to the data dir's keyring by `baton keys rotate` while this process runs is
    // picked up when a value sealed under it is first read.
    cipher = new Cipher(keyring.keys, file === undefined ? undefined : () => readKeyringFile(file));
  }
  return { secrets, created, cipher };
}

export interface DoctorReport {
  env: Config['env'];
  dataDir: string;
  modes: ModeReport[];
  secrets: SecretReport[];
  encryption: KeyringReport & { on: boolean };
  tls: TlsReport;
  production: { checked: boolean; problems: string[] };
  ok: boolean;
}

/**
 * What `baton doctor` prints: everything above, for this config, without changing or creating
 * anything. The production checks are run whatever the mode (so a development setup can be
 * checked before it goes live); only in production mode do they make the report fail.
 */
export function inspectDataProtection(config: Config, dataDir: string, env: NodeJS.ProcessEnv = process.env): DoctorReport {
  const production = config.env === 'production';
  const modes = inspectModes(dataDir);
  const keyring = keyringReport(tryKeyring(dataDir, env, production));
  let secrets: SecretReport[];
  let reused: string[] = [];
  try {
    const resolved = resolveSecrets(dataDir, { env, production, create: false });
    secrets = resolved.reports;
    reused = secretReuseProblems(resolved.secrets);
  } catch (err) {
    secrets = [
      { name: 'key_pepper', env: 'BATON_KEY_PEPPER', source: 'missing', bytes: 0, weak: err instanceof Error ? err.message : 'unreadable' },
    ];
  }
  const problems = [...productionProblems(config, secrets, keyring, modes), ...reused];
  const devProblems = [...modes.filter((m) => !m.ok).map(describeMode), ...(keyring.error === undefined ? [] : [keyring.error])];
  return {
    env: config.env,
    dataDir,
    modes,
    secrets,
    encryption: { ...keyring, on: keyring.ids.length > 0 },
    tls: tlsReport(config),
    production: { checked: production, problems },
    ok: production ? problems.length === 0 : devProblems.length === 0,
  };
}
