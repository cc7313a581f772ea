import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { BUILTIN_ROLES, expandGrants, ROLE_NAME } from './core/roles.js';
import { AUDIT_SETTINGS } from './settings/audit.js';
import { AUTH_SETTINGS } from './settings/auth.js';
import { DATA_SETTINGS } from './settings/data.js';
import { int, list, ms } from './settings/kit.js';
import { TRANSPORT_SETTINGS } from './settings/transport.js';
import { STORE_SETTINGS } from './settings/store.js';
import { LIFECYCLE_SETTINGS } from './settings/lifecycle.js';
import { RETENTION_SETTINGS } from './settings/retention.js';
import { WEB_SETTINGS } from './settings/web.js';
import { TOOLS_SETTINGS } from './settings/tools.js';

/**
 * One schema for every setting. Sources, strongest first: CLI flags, environment (`BATON_*`),
 * a JSON config file (`--config` / `BATON_CONFIG`), defaults. Any invalid value stops the start
 * with a message naming the setting, its source and what is allowed.
 */
const port = int(0, 65535);

export const ConfigSchema = z
  .object({
    env: z.enum(['development', 'production']).default('development'),
    dataDir: z.string().min(1).default('.baton'),
    host: z.string().min(1).max(255).default('127.0.0.1'),
    port: port.default(7410),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Default and maximum lease a claim gets (ms). */
    leaseMs: ms(1000, 86_400_000).default(300_000),
    leaseMaxMs: ms(1000, 86_400_000).default(3_600_000),
    /** Upper bound for any wait (task_claim long-poll). */
    waitMaxMs: ms(0, 300_000).default(60_000),
    /** Retry backoff after a failed attempt: base·2^(n-1), capped. */
    backoffBaseMs: ms(0, 86_400_000).default(5_000),
    backoffMaxMs: ms(0, 86_400_000).default(600_000),
    defaultMaxAttempts: int(1, 100).default(3),
    /** How often the lease sweeper runs (ms). */
    sweepIntervalMs: ms(50, 600_000).default(1_000),
    /** Largest HTTP request body accepted (bytes). */
    maxBodyBytes: int(1024, 64 * 1024 * 1024).default(1024 * 1024),
    /**
     * Input limits over every op (S15), on top of each field's own limit in its schema (which
     * these can only lower): the longest string, the longest array, the largest page, the
     * deepest JSON body.
     */
    maxStringChars: int(1, 1_000_000).default(100_000),
    maxArrayItems: int(1, 10_000).default(500),
    maxPageSize: int(1, 1000).default(500),
    maxJsonDepth: int(8, 256).default(32),
    /** Cross-process doorbell poll period (ms). */
    pollMs: ms(2, 1000).default(10),
    /** How long a write waits for another process's write lock before answering `unavailable` (ms). */
    busyTimeoutMs: ms(0, 60_000).default(5_000),
    /**
     * Repositories a session checkpoint may commit in (absolute paths; a repo inside one counts).
     * Empty: only the project directory, i.e. the directory that holds the data dir.
     */
    gitRepos: list(z.string().regex(/^\//, 'expected an absolute path').max(1024), 50).default([]),
    /** Finished sessions (with checkpoints and accepted handoffs) are removed this long after they end (ms). */
    sessionRetentionMs: ms(60_000, 10 * 365 * 86_400_000).default(30 * 86_400_000),
    /**
     * Custom roles (S8): name → permissions and/or tiers (`tier:read|write|admin|debug`), e.g. an
     * organisation's COO / PA / PM / Executive (see examples/organisation-roles.json).
     */
    roles: z
      .preprocess(
        (v) => {
          if (typeof v !== 'string') return v;
          try {
            return JSON.parse(v) as unknown;
          } catch {
            return v;
          }
        },
        z.record(z.string().regex(ROLE_NAME, 'expected a role name'), z.array(z.string().max(64)).max(64)),
      )
      .superRefine((roles, ctx) => {
        for (const [name, entries] of Object.entries(roles)) {
          if ((BUILTIN_ROLES as readonly string[]).includes(name)) {
            ctx.addIssue({ code: 'custom', message: `role "${name}" is built in and cannot be redefined` });
          }
          try {
            expandGrants(entries);
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: `role "${name}": ${(err as Error).message}` });
          }
        }
      })
      .default({}),
    // The security settings, one fragment per area (src/settings/).
    ...AUTH_SETTINGS.shape,
    ...TRANSPORT_SETTINGS.shape,
    ...AUDIT_SETTINGS.shape,
    ...DATA_SETTINGS.shape,
    ...STORE_SETTINGS.shape,
    ...LIFECYCLE_SETTINGS.shape,
    ...RETENTION_SETTINGS.shape,
    ...WEB_SETTINGS.shape,
    ...TOOLS_SETTINGS.shape,
  })
  .strict()
  .refine((c) => c.leaseMs <= c.leaseMaxMs, { message: 'leaseMs must not exceed leaseMaxMs', path: ['leaseMs'], params: { other: 'leaseMaxMs' } })
  .refine((c) => c.backoffBaseMs <= c.backoffMaxMs, {
    message: 'backoffBaseMs must not exceed backoffMaxMs',
    path: ['backoffBaseMs'],
    params: { other: 'backoffMaxMs' },
  });

export type Config = z.infer<typeof ConfigSchema>;
type Key = keyof Config;

export const ENV_NAMES: Record<Key, string> = {
  env: 'BATON_ENV',
  dataDir: 'BATON_DATA',
  host: 'BATON_HOST',
  port: 'BATON_PORT',
  logLevel: 'BATON_LOG_LEVEL',
  leaseMs: 'BATON_LEASE_MS',
  leaseMaxMs: 'BATON_LEASE_MAX_MS',
  waitMaxMs: 'BATON_WAIT_MAX_MS',
  backoffBaseMs: 'BATON_BACKOFF_BASE_MS',
  backoffMaxMs: 'BATON_BACKOFF_MAX_MS',
  defaultMaxAttempts: 'BATON_MAX_ATTEMPTS',
  sweepIntervalMs: 'BATON_SWEEP_INTERVAL_MS',
  maxBodyBytes: 'BATON_MAX_BODY_BYTES',
  maxStringChars: 'BATON_MAX_STRING_CHARS',
  maxArrayItems: 'BATON_MAX_ARRAY_ITEMS',
  maxPageSize: 'BATON_MAX_PAGE_SIZE',
  maxJsonDepth: 'BATON_MAX_JSON_DEPTH',
  pollMs: 'BATON_POLL_MS',
  busyTimeoutMs: 'BATON_BUSY_TIMEOUT_MS',
  sessionRetentionMs: 'BATON_SESSION_RETENTION_MS',
  gitRepos: 'BATON_GIT_REPOS',
  roles: 'BATON_ROLES',
  ...AUTH_SETTINGS.env,
  ...TRANSPORT_SETTINGS.env,
  ...AUDIT_SETTINGS.env,
  ...DATA_SETTINGS.env,
  ...STORE_SETTINGS.env,
  ...LIFECYCLE_SETTINGS.env,
  ...RETENTION_SETTINGS.env,
  ...WEB_SETTINGS.env,
  ...TOOLS_SETTINGS.env,
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  flags?: Partial<Record<Key, unknown>>;
  env?: NodeJS.ProcessEnv;
  /** Path to a JSON config file; defaults to BATON_CONFIG from env. */
  file?: string;
}

function describeAllowed(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `allowed: ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return `minimum ${String(issue.minimum)}`;
    case 'too_big':
      return `maximum ${String(issue.maximum)}`;
    case 'invalid_type':
      return `expected ${issue.expected}`;
    case 'invalid_key':
      return `invalid name "${String(issue.path[issue.path.length - 1])}" (lower-case letters, digits, _ and -)`;
    case 'unrecognized_keys':
      return `unknown setting(s) ${issue.keys.join(', ')}; known: ${Object.keys(ENV_NAMES).join(', ')}`;
    default:
      return issue.message;
  }
}

export function loadConfig(sources: ConfigSources = {}): Config {
  const env = sources.env ?? process.env;
  const origin = new Map<string, string>();
  // No prototype: a config file's "__proto__" key is then an own key, refused as unknown like any
  // other, instead of setting the object's prototype (whose values zod would read as settings).
  const merged: Record<string, unknown> = Object.create(null) as Record<string, unknown>;

  const file = sources.file ?? env.BATON_CONFIG;
  if (file !== undefined && file !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(resolve(file), 'utf8'));
    } catch (err) {
      const why = err instanceof SyntaxError ? 'is not valid JSON' : 'cannot be read';
      throw new ConfigError(`config file ${file} ${why}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError(`config file ${file} must hold a JSON object`);
    }
    for (const [k, v] of Object.entries(parsed)) {
      merged[k] = v;
      origin.set(k, `config file ${file}`);
    }
  }
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const value = env[name];
    if (value !== undefined && value !== '') {
      merged[key] = value;
      origin.set(key, `environment ${name}`);
    }
  }
  for (const [key, value] of Object.entries(sources.flags ?? {})) {
    if (value !== undefined) {
      merged[key] = value;
      origin.set(key, 'command-line flag');
    }
  }

  // Parsed once per process: zod's compiled fast path (generated with new Function, so never in
  // the code cache) cost a `baton mcp` start ~3 ms more than the interpreted parse (issue 11).
  const result = ConfigSchema.safeParse(merged, { jitless: true });
  if (!result.success) {
    const sourceOf = (key: string): string => origin.get(key) ?? origin.get(key.split('.')[0]!) ?? 'default';
    const lines = result.error.issues.flatMap((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map(
          (k) => `  ${k} (${sourceOf(k)}): unknown setting; known: ${Object.keys(ENV_NAMES).join(', ')}`,
        );
      }
      const key = issue.path.map(String).join('.') || '(config)';
      const other = issue.code === 'custom' ? (issue.params as { other?: string } | undefined)?.other : undefined;
      const rule = other === undefined ? describeAllowed(issue) : `${issue.message} (${other}: ${sourceOf(other)})`;
      return [`  ${key} (${sourceOf(key)}): ${rule}`];
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return result.data;
}
