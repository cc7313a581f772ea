import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, ConfigSchema, ENV_NAMES, loadConfig, type Config, type ConfigSources } from '../../src/config.js';

const dir = mkdtempSync(join(tmpdir(), 'baton-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function configFile(body: string): string {
  const path = join(dir, `config-${++fileCount}.json`);
  writeFileSync(path, body);
  return path;
}

const DEFAULTS: Config = {
  env: 'development',
  dataDir: '.baton',
  host: '127.0.0.1',
  port: 7410,
  logLevel: 'info',
  leaseMs: 300_000,
  leaseMaxMs: 3_600_000,
  waitMaxMs: 60_000,
  backoffBaseMs: 5_000,
  backoffMaxMs: 600_000,
  defaultMaxAttempts: 3,
  sweepIntervalMs: 1_000,
  maxBodyBytes: 1024 * 1024,
  pollMs: 10,
  busyTimeoutMs: 5_000,
  sessionRetentionMs: 30 * 86_400_000,
  eventRetentionMs: 7 * 86_400_000,
  eventRetentionMax: 1_000_000,
  taskRetentionMs: 0,
  messageRetentionMs: 0,
  retentionIntervalMs: 60_000,
  retentionChunk: 2_000,
  gitRepos: [],
  auditRetentionDays: 0,
  auditAuthFailureLimit: 10,
  tlsCert: '',
  tlsKey: '',
  allowInsecureHttp: false,
  hstsMaxAgeS: 31_536_000,
  allowedHosts: [],
  corsOrigins: [],
  ipAllow: [],
  ipDeny: [],
  trustedProxies: [],
  rateLimit: true,
  rateLimitAddressPerMin: 6_000,
  rateLimitReadPerMin: 6_000,
  rateLimitWritePerMin: 3_000,
  rateLimitAdminPerMin: 600,
  maxConnections: 1_024,
  maxConnectionsPerAddress: 256,
  connectionRatePerMin: 1_200,
  idleTimeoutMs: 65_000,
  sessionIdleMs: 30 * 60_000,
  sessionMaxMs: 12 * 3_600_000,
  streamHeartbeatMs: 15_000,
  streamMaxPerPrincipal: 8,
  streamMaxTotal: 2_000,
  streamBufferBytes: 1024 * 1024,
  metricsToken: '',
  encryptedSearchScan: 1000,
  durability: 'full',
  databaseUrl: undefined,
  databaseSchema: 'public',
  poolSize: 10,
  statementTimeoutMs: 30_000,
  breakerThreshold: 5,
  breakerCooldownMs: 2_000,
  jwtIssuer: 'baton',
  jwtAudience: 'baton',
  accessTokenTtlMs: 900_000,
  refreshTokenTtlMs: 30 * 86_400_000,
  authFailuresPerMinute: 10,
  authBlockMs: 60_000,
  oauthIssuer: '',
  oauthJwksUrl: '',
  oauthAudience: '',
  oauthRoleClaim: 'role',
  oauthRoleMap: [],
  oauthProject: 'default',
  oauthResourceUrl: '',
  roles: {},
  maxStringChars: 100_000,
  maxArrayItems: 500,
  maxPageSize: 500,
  maxJsonDepth: 32,
  waitRecheckMs: 1_000,
  bodyTimeoutMs: 10_000,
  drainTimeoutMs: 10_000,
  toolsDefault: 'all',
  mcpWaitCapMs: 50_000,
  waitProgressMs: 15_000,
};

/** Runs loadConfig and returns the ConfigError's message; fails if it does not throw one. */
function configError(sources: ConfigSources): string {
  try {
    loadConfig(sources);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).name).toBe('ConfigError');
    return (err as Error).message;
  }
  throw new Error('expected loadConfig to throw a ConfigError');
}

describe('loadConfig: defaults', () => {
  it('returns every default when nothing is set', () => {
    expect(loadConfig({ env: {} })).toEqual(DEFAULTS);
  });

  it('binds to loopback by default', () => {
    expect(loadConfig({ env: {} }).host).toBe('127.0.0.1');
  });

  it('matches the schema defaults', () => {
    expect(ConfigSchema.parse({})).toEqual(DEFAULTS);
  });

  it('reads the given env, not process.env', () => {
    const saved = process.env.BATON_PORT;
    process.env.BATON_PORT = '1234';
    try {
      expect(loadConfig({ env: {} }).port).toBe(7410);
      expect(loadConfig({ env: { BATON_PORT: '4321' } }).port).toBe(4321);
    } finally {
      if (saved === undefined) delete process.env.BATON_PORT;
      else process.env.BATON_PORT = saved;
    }
  });
});

describe('loadConfig: environment', () => {
  const VALID: Record<keyof Config, [string, unknown]> = {
    env: ['production', 'production'],
    dataDir: ['/var/lib/baton', '/var/lib/baton'],
    host: ['0.0.0.0', '0.0.0.0'],
    port: ['8080', 8080],
    logLevel: ['debug', 'debug'],
    leaseMs: ['60000', 60_000],
    leaseMaxMs: ['7200000', 7_200_000],
    waitMaxMs: ['30000', 30_000],
    backoffBaseMs: ['100', 100],
    backoffMaxMs: ['900000', 900_000],
    defaultMaxAttempts: ['7', 7],
    sweepIntervalMs: ['250', 250],
    maxBodyBytes: ['2048', 2048],
    pollMs: ['50', 50],
    busyTimeoutMs: ['250', 250],
    sessionRetentionMs: ['86400000', 86_400_000],
    eventRetentionMs: ['3600000', 3_600_000],
    eventRetentionMax: ['5000', 5_000],
    taskRetentionMs: ['86400000', 86_400_000],
    messageRetentionMs: ['0', 0],
    retentionIntervalMs: ['5000', 5_000],
    retentionChunk: ['500', 500],
    gitRepos: ['/srv/a, /srv/b', ['/srv/a', '/srv/b']],
    auditRetentionDays: ['90', 90],
    auditAuthFailureLimit: ['25', 25],
    tlsCert: ['/etc/baton/cert.pem', '/etc/baton/cert.pem'],
    tlsKey: ['/etc/baton/key.pem', '/etc/baton/key.pem'],
    allowInsecureHttp: ['true', true],
    hstsMaxAgeS: ['600', 600],
    allowedHosts: ['baton.example, [::1]', ['baton.example', '[::1]']],
    corsOrigins: ['https://app.example:8443', ['https://app.example:8443']],
    ipAllow: ['10.0.0.0/8, 2001:db8::/32', ['10.0.0.0/8', '2001:db8::/32']],
    ipDeny: ['192.168.1.7', ['192.168.1.7']],
    trustedProxies: ['10.0.0.5, fd00::/8', ['10.0.0.5', 'fd00::/8']],
    rateLimit: ['false', false],
    rateLimitAddressPerMin: ['100', 100],
    rateLimitReadPerMin: ['200', 200],
    rateLimitWritePerMin: ['50', 50],
    rateLimitAdminPerMin: ['5', 5],
    maxConnections: ['64', 64],
    maxConnectionsPerAddress: ['8', 8],
    connectionRatePerMin: ['30', 30],
    idleTimeoutMs: ['5000', 5_000],
    encryptedSearchScan: ['5000', 5_000],
    durability: ['normal', 'normal'],
    databaseUrl: ['postgres://baton@db.internal:5432/baton', 'postgres://baton@db.internal:5432/baton'],
    databaseSchema: ['baton_a', 'baton_a'],
    poolSize: ['20', 20],
    statementTimeoutMs: ['5000', 5000],
    breakerThreshold: ['3', 3],
    breakerCooldownMs: ['500', 500],
    jwtIssuer: ['https://baton.example', 'https://baton.example'],
    jwtAudience: ['baton-prod', 'baton-prod'],
    accessTokenTtlMs: ['300000', 300_000],
    refreshTokenTtlMs: ['86400000', 86_400_000],
    authFailuresPerMinute: ['3', 3],
    authBlockMs: ['5000', 5_000],
    oauthIssuer: ['https://idp.example', 'https://idp.example'],
    oauthJwksUrl: ['https://idp.example/.well-known/jwks.json', 'https://idp.example/.well-known/jwks.json'],
    oauthAudience: ['baton-api', 'baton-api'],
    oauthRoleClaim: ['groups', 'groups'],
    oauthRoleMap: ['devs=worker, ops=lead', ['devs=worker', 'ops=lead']],
    oauthProject: ['ext', 'ext'],
    oauthResourceUrl: ['https://baton.example', 'https://baton.example'],
    roles: ['{"pm":["tier:read","plan.write"]}', { pm: ['tier:read', 'plan.write'] }],
    maxStringChars: ['5000', 5000],
    maxArrayItems: ['50', 50],
    maxPageSize: ['20', 20],
    maxJsonDepth: ['12', 12],
    waitRecheckMs: ['0', 0],
    bodyTimeoutMs: ['5000', 5_000],
    drainTimeoutMs: ['2000', 2_000],
    sessionIdleMs: ['600000', 600_000],
    sessionMaxMs: ['3600000', 3_600_000],
    streamHeartbeatMs: ['500', 500],
    streamMaxPerPrincipal: ['2', 2],
    streamMaxTotal: ['100', 100],
    streamBufferBytes: ['65536', 65_536],
    metricsToken: ['m'.repeat(40), 'm'.repeat(40)],
    toolsDefault: ['core', 'core'],
    mcpWaitCapMs: ['30000', 30_000],
    waitProgressMs: ['5000', 5_000],
  };

  it('names an environment variable for every setting', () => {
    expect(Object.keys(ENV_NAMES).sort()).toEqual(Object.keys(DEFAULTS).sort());
    for (const name of Object.values(ENV_NAMES)) expect(name).toMatch(/^BATON_[A-Z_]+$/);
    expect(ENV_NAMES.port).toBe('BATON_PORT');
  });

  it.each(Object.keys(VALID) as (keyof Config)[])('applies %s from its environment variable, coerced', (key) => {
    const [raw, value] = VALID[key];
    const cfg = loadConfig({ env: { [ENV_NAMES[key]]: raw } });
    expect(cfg[key]).toStrictEqual(value);
    // Every other setting keeps its default.
    expect({ ...cfg, [key]: DEFAULTS[key] }).toEqual(DEFAULTS);
  });

  it('applies all environment variables together', () => {
    const env = Object.fromEntries(Object.entries(VALID).map(([k, [raw]]) => [ENV_NAMES[k as keyof Config], raw]));
    const expected = Object.fromEntries(Object.entries(VALID).map(([k, [, v]]) => [k, v]));
    expect(loadConfig({ env })).toEqual(expected);
  });

  it('ignores empty environment variables', () => {
    expect(loadConfig({ env: { BATON_PORT: '', BATON_LOG_LEVEL: '' } })).toEqual(DEFAULTS);
  });

  it('ignores unrelated environment variables', () => {
    expect(loadConfig({ env: { PORT: '1', BATON_NOPE: 'x', HOME: '/root' } })).toEqual(DEFAULTS);
  });
});

describe('loadConfig: precedence', () => {
  it('applies a JSON config file', () => {
    const file = configFile(JSON.stringify({ port: 9000, logLevel: 'warn', dataDir: 'data' }));
    expect(loadConfig({ env: {}, file })).toEqual({ ...DEFAULTS, port: 9000, logLevel: 'warn', dataDir: 'data' });
  });

  it('a blank or non-integer store number in the file is refused, never read as 0 (0 turns the breaker off)', () => {
    for (const [key, value] of [['breakerThreshold', ''], ['poolSize', '4.5'], ['statementTimeoutMs', true], ['breakerCooldownMs', null]] as const) {
      expect(configError({ env: {}, file: configFile(JSON.stringify({ [key]: value })) })).toContain(key);
    }
    expect(loadConfig({ env: {}, file: configFile(JSON.stringify({ breakerThreshold: '7' })) }).breakerThreshold).toBe(7);
  });

  it('environment overrides the file', () => {
    const file = configFile(JSON.stringify({ port: 9000, logLevel: 'warn' }));
    const cfg = loadConfig({ env: { BATON_PORT: '9100' }, file });
    expect(cfg.port).toBe(9100);
    expect(cfg.logLevel).toBe('warn');
  });

  it('flags override environment and file', () => {
    const file = configFile(JSON.stringify({ port: 9000, logLevel: 'warn', host: 'file.local' }));
    const cfg = loadConfig({ env: { BATON_PORT: '9100', BATON_LOG_LEVEL: 'error' }, flags: { port: 9200 }, file });
    expect(cfg.port).toBe(9200);
    expect(cfg.logLevel).toBe('error');
    expect(cfg.host).toBe('file.local');
  });

  it('undefined flags do not override anything', () => {
    const cfg = loadConfig({ env: { BATON_PORT: '9100' }, flags: { port: undefined, logLevel: 'trace' } });
    expect(cfg.port).toBe(9100);
    expect(cfg.logLevel).toBe('trace');
  });

  it('coerces string flags like environment values', () => {
    expect(loadConfig({ env: {}, flags: { port: '9300' } }).port).toBe(9300);
  });

  it('reads the file named by BATON_CONFIG', () => {
    const file = configFile(JSON.stringify({ port: 9400 }));
    expect(loadConfig({ env: { BATON_CONFIG: file } }).port).toBe(9400);
  });

  it('an explicit file wins over BATON_CONFIG', () => {
    const fromEnv = configFile(JSON.stringify({ port: 9500 }));
    const explicit = configFile(JSON.stringify({ port: 9600 }));
    expect(loadConfig({ env: { BATON_CONFIG: fromEnv }, file: explicit }).port).toBe(9600);
  });

  it('an empty BATON_CONFIG means no file', () => {
    expect(loadConfig({ env: { BATON_CONFIG: '' } })).toEqual(DEFAULTS);
  });

  it('an empty JSON object leaves the defaults', () => {
    expect(loadConfig({ env: {}, file: configFile('{}') })).toEqual(DEFAULTS);
  });
});

describe('loadConfig: invalid values name the setting, its source and what is allowed', () => {
  it('port above the maximum, from the environment', () => {
    const msg = configError({ env: { BATON_PORT: '70000' } });
    expect(msg).toContain('port');
    expect(msg).toContain('environment BATON_PORT');
    expect(msg).toContain('maximum 65535');
  });

  it('port below the minimum, from a flag', () => {
    const msg = configError({ env: {}, flags: { port: -1 } });
    expect(msg).toContain('port');
    expect(msg).toContain('command-line flag');
    expect(msg).toContain('minimum 0');
  });

  it('port that is not a number', () => {
    const msg = configError({ env: { BATON_PORT: 'eighty' } });
    expect(msg).toContain('port (environment BATON_PORT)');
    expect(msg).toMatch(/expected number/);
  });

  it('fractional values refused for integer settings', () => {
    const msg = configError({ env: { BATON_LEASE_MS: '1500.5' } });
    expect(msg).toContain('leaseMs (environment BATON_LEASE_MS)');
  });

  it('enum value lists the allowed values', () => {
    const msg = configError({ env: { BATON_LOG_LEVEL: 'loud' } });
    expect(msg).toContain('logLevel (environment BATON_LOG_LEVEL)');
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) expect(msg).toContain(`"${level}"`);
  });

  it('env value outside development/production', () => {
    const msg = configError({ env: { BATON_ENV: 'staging' } });
    expect(msg).toContain('env (environment BATON_ENV)');
    expect(msg).toContain('"development", "production"');
  });

  it('value from a config file names the file', () => {
    const file = configFile(JSON.stringify({ pollMs: 1 }));
    const msg = configError({ env: {}, file });
    expect(msg).toContain(`pollMs (config file ${file})`);
    expect(msg).toContain('minimum 2');
  });

  it('a wrongly typed value in a config file', () => {
    const file = configFile(JSON.stringify({ host: 42 }));
    const msg = configError({ env: {}, file });
    expect(msg).toContain(`host (config file ${file})`);
    expect(msg).toContain('expected string');
  });

  it('lists every invalid setting at once', () => {
    const msg = configError({ env: { BATON_PORT: '99999', BATON_LOG_LEVEL: 'x', BATON_MAX_ATTEMPTS: '0' } });
    expect(msg).toContain('port (environment BATON_PORT): maximum 65535');
    expect(msg).toContain('logLevel (environment BATON_LOG_LEVEL)');
    expect(msg).toContain('defaultMaxAttempts (environment BATON_MAX_ATTEMPTS): minimum 1');
  });

  it.each([
    ['maxBodyBytes', 'BATON_MAX_BODY_BYTES', '100', 'minimum 1024'],
    ['maxBodyBytes', 'BATON_MAX_BODY_BYTES', String(64 * 1024 * 1024 + 1), `maximum ${64 * 1024 * 1024}`],
    ['waitMaxMs', 'BATON_WAIT_MAX_MS', '300001', 'maximum 300000'],
    ['sweepIntervalMs', 'BATON_SWEEP_INTERVAL_MS', '49', 'minimum 50'],
    ['leaseMs', 'BATON_LEASE_MS', '999', 'minimum 1000'],
    ['defaultMaxAttempts', 'BATON_MAX_ATTEMPTS', '101', 'maximum 100'],
    ['pollMs', 'BATON_POLL_MS', '1001', 'maximum 1000'],
  ])('%s from %s=%s is refused with "%s"', (key, name, raw, allowed) => {
    const msg = configError({ env: { [name]: raw } });
    expect(msg).toContain(`${key} (environment ${name}): ${allowed}`);
  });

  it('accepts the exact bounds', () => {
    expect(loadConfig({ env: { BATON_PORT: '0' } }).port).toBe(0);
    expect(loadConfig({ env: { BATON_PORT: '65535' } }).port).toBe(65535);
    expect(loadConfig({ env: { BATON_POLL_MS: '2' } }).pollMs).toBe(2);
  });

  it('a flag overriding a bad env value makes the config valid', () => {
    expect(loadConfig({ env: { BATON_PORT: 'bad' }, flags: { port: 1 } }).port).toBe(1);
  });

  // BUG (src/config.ts): z.coerce.number() turns whitespace, null and true into numbers, so
  // BATON_PORT=" " or {"port": null} silently becomes port 0 (any free port) instead of stopping.
  // Remove `.fails` once fixed.
  it('refuses a whitespace-only number in the environment', () => {
    configError({ env: { BATON_PORT: ' ' } });
  });

  it('refuses a number with spaces around it or a leading zero (read as octal elsewhere), and takes a plain one', () => {
    for (const v of ['1000 ', ' 1000', '01000', '1e3', '+1000', '1_000']) {
      expect(configError({ env: { BATON_LEASE_MS: v } }), JSON.stringify(v)).toContain('leaseMs (environment BATON_LEASE_MS): expected number');
    }
    expect(loadConfig({ env: { BATON_LEASE_MS: '1000' } }).leaseMs).toBe(1000);
    expect(loadConfig({ env: { BATON_WAIT_MAX_MS: '0' } }).waitMaxMs).toBe(0);
  });

  it('refuses null and booleans for numbers in a config file', () => {
    configError({ env: {}, file: configFile('{"port": null}') });
    configError({ env: {}, file: configFile('{"port": true}') });
  });
});

describe('loadConfig: config file problems', () => {
  it('refuses an unknown key, naming it', () => {
    const file = configFile(JSON.stringify({ port: 8000, prot: 8000 }));
    const msg = configError({ env: {}, file });
    expect(msg).toContain('prot');
    expect(msg).toContain(`config file ${file}`);
    expect(msg).toMatch(/unknown setting/);
  });

  it('refuses several unknown keys, naming each', () => {
    const file = configFile(JSON.stringify({ colour: 'blue', __extra: 1 }));
    const msg = configError({ env: {}, file });
    expect(msg).toContain('colour');
    expect(msg).toContain('__extra');
  });

  it('refuses a file that is not JSON', () => {
    const file = configFile('port = 8080\n');
    const msg = configError({ env: {}, file });
    expect(msg).toContain(file);
    expect(msg).toContain('is not valid JSON');
  });

  it('refuses an empty file', () => {
    expect(configError({ env: {}, file: configFile('') })).toContain('is not valid JSON');
  });

  it.each([
    ['an array', '[{"port": 1}]'],
    ['a number', '42'],
    ['a string', '"port"'],
    ['null', 'null'],
    ['a boolean', 'true'],
  ])('refuses a file holding %s', (_label, body) => {
    const file = configFile(body);
    const msg = configError({ env: {}, file });
    expect(msg).toContain(file);
    expect(msg).toContain('must hold a JSON object');
  });

  it('refuses a file that cannot be read', () => {
    const file = join(dir, 'does-not-exist.json');
    const msg = configError({ env: {}, file });
    expect(msg).toContain(file);
    expect(msg).toContain('cannot be read');
  });

  it('refuses a directory as config file', () => {
    expect(configError({ env: {}, file: dir })).toContain('cannot be read');
  });

  // BUG (src/config.ts loadConfig): an unknown key passed as a flag is reported as coming from
  // "config file undefined". Remove `.fails` once fixed.
  it('names the right source for an unknown flag', () => {
    const msg = configError({ env: {}, flags: { bogus: 1 } as ConfigSources['flags'] });
    expect(msg).toContain('bogus');
    expect(msg).not.toContain('config file undefined');
  });
});

describe('loadConfig: cross-field rules', () => {
  it('refuses leaseMs > leaseMaxMs', () => {
    const msg = configError({ env: {}, flags: { leaseMs: 10_000, leaseMaxMs: 5_000 } });
    expect(msg).toContain('leaseMs');
    expect(msg).toContain('leaseMs must not exceed leaseMaxMs');
  });

  it('refuses a leaseMs above the default leaseMaxMs', () => {
    const msg = configError({ env: { BATON_LEASE_MS: '4000000' } });
    expect(msg).toContain('leaseMs (environment BATON_LEASE_MS): leaseMs must not exceed leaseMaxMs');
  });

  it('accepts leaseMs equal to leaseMaxMs', () => {
    const cfg = loadConfig({ env: {}, flags: { leaseMs: 5_000, leaseMaxMs: 5_000 } });
    expect(cfg.leaseMs).toBe(5_000);
    expect(cfg.leaseMaxMs).toBe(5_000);
  });

  it('refuses backoffBaseMs > backoffMaxMs', () => {
    const msg = configError({ env: { BATON_BACKOFF_BASE_MS: '2000', BATON_BACKOFF_MAX_MS: '1000' } });
    expect(msg).toContain('backoffBaseMs');
    expect(msg).toContain('backoffBaseMs must not exceed backoffMaxMs');
  });

  it('accepts backoffBaseMs equal to backoffMaxMs', () => {
    expect(loadConfig({ env: { BATON_BACKOFF_BASE_MS: '1000', BATON_BACKOFF_MAX_MS: '1000' } }).backoffBaseMs).toBe(1000);
  });

  // BUG (src/config.ts): the refine issue is attributed to leaseMs only, so lowering
  // BATON_LEASE_MAX_MS reports "leaseMs (default)" and never names the variable that broke it.
  // Remove `.fails` once fixed.
  it('names the source of leaseMaxMs when lowering it breaks the rule', () => {
    const msg = configError({ env: { BATON_LEASE_MAX_MS: '2000' } });
    expect(msg).toContain('environment BATON_LEASE_MAX_MS');
  });
});
