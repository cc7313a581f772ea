import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs to stderr (stdout belongs to the MCP stdio protocol), S28.
 *
 * Three nets, so a secret reaches the log only if all three miss it:
 * 1. by name: fields called like credentials (`authorization`, `x-api-key`, `cookie`,
 *    `set-cookie`, `key`, `token`, `refresh_token`, `password`, `secret`, `*_token`, `*_secret`,
 *    …) are replaced at any depth, in every argument of every log call (`hooks.logMethod`), and
 *    by pino's own `redact` for the common header paths;
 * 2. by shape: every string (messages, error messages and stacks, field values) has
 *    secret-looking substrings replaced — Baton keys and refresh tokens, JWTs, `sk-…`, GitHub and
 *    Slack tokens, AWS key ids, private key blocks, `Bearer …`;
 * 3. the same shape scrub runs over each finished JSON line before it is written (child bindings,
 *    serializers, formatted arguments).
 * Op inputs are never logged (the audit keeps their summary); where a log must mention content
 * (a message body, a memory value) it logs `contentSummary(text)`: length and a short hash.
 *
 * Retention: logs are a stream on stderr; rotating and expiring them is the job of what
 * collects it (journald, the container runtime, logrotate), configured there (S30).
 */
export const REDACTED = '[redacted]';

const SECRET_NAME =
  /^(authorization|proxy-authorization|x-api-key|api[-_]?key|cookie|set-cookie|key|keys|token|tokens|access_token|refresh_token|id_token|password|passwd|passphrase|secret|secrets|client_secret|private_key|key_pepper|keypepper|credentials?)$|(_|-)(token|secret|password|key)$|^database_?url$/i;
/** camelCase names: `metricsToken`, `jwtSecret`, `keyPepper`'s kin (case matters: `monkey` is not one). */
const SECRET_CAMEL = /[a-z0-9](Token|Secret|Password|Passphrase|Key|Pepper)$/;

const SECRET_SHAPES: readonly (readonly [RegExp, string])[] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[A-Za-z0-9+/=\s\\]*)/g, REDACTED],
  [/\bbatr?_[A-Za-z0-9_-]{16,}/g, REDACTED],
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, REDACTED],
  [/\bsk-[A-Za-z0-9_-]{12,}/g, REDACTED],
  [/\bgh[pousr]_[A-Za-z0-9]{16,}/g, REDACTED],
  [/\bgithub_pat_[A-Za-z0-9_]{20,}/g, REDACTED],
  [/\bxox[abprs]-[A-Za-z0-9-]{10,}/g, REDACTED],
  [/\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, REDACTED],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  // A password in a URL's userinfo (postgres://user:password@host/db).
  [/\b([a-z][a-z0-9+.-]*:\/\/[^/:@\s]+:)[^@\s/]+@/gi, `$1${REDACTED}@`],
];

/** Replaces every secret-looking substring of `text`. */
export function scrubText(text: string): string {
  let out = text;
  for (const [re, replacement] of SECRET_SHAPES) {
    re.lastIndex = 0;
    if (re.test(out)) {
      re.lastIndex = 0;
      out = out.replace(re, replacement);
    }
  }
  return out;
}

/** Length and a short SHA-256 of content a log line must refer to (never the content itself). */
export function contentSummary(text: string): { len: number; sha256: string } {
  return { len: text.length, sha256: createHash('sha256').update(text).digest('hex').slice(0, 12) };
}

function scrubError(err: Error, depth: number): Error {
  const copy = new Error(scrubText(err.message));
  copy.name = err.name;
  copy.stack = err.stack === undefined ? undefined : scrubText(err.stack);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') (copy as { code?: unknown }).code = code;
  if (err.cause !== undefined && depth < 4) copy.cause = scrubValue(err.cause, depth + 1);
  return copy;
}

/** A copy of `value` with credential-named fields redacted and every string scrubbed. */
export function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (depth > 8) return '[depth]';
  if (value instanceof Error) return scrubError(value, depth);
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => scrubValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = (SECRET_NAME.test(k) || SECRET_CAMEL.test(k)) && v !== null && v !== undefined ? REDACTED : scrubValue(v, depth + 1);
  }
  return out;
}

/** A destination that scrubs each finished line before passing it on. */
function scrubbing(destination: NodeJS.WritableStream): pino.DestinationStream {
  return {
    write(line: string): void {
      destination.write(scrubText(line));
    },
  };
}

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { svc: 'baton' },
      redact: {
        paths: [
          'key',
          'token',
          'password',
          'secret',
          'refresh_token',
          '*.key',
          '*.token',
          '*.password',
          '*.secret',
          '*.refresh_token',
          'req.headers.authorization',
          'req.headers["x-api-key"]',
          'req.headers.cookie',
          'res.headers["set-cookie"]',
          'headers.authorization',
          'headers["x-api-key"]',
          'headers.cookie',
          'headers["set-cookie"]',
        ],
        censor: REDACTED,
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => scrubValue(a)) as Parameters<typeof method>);
        },
      },
    },
    scrubbing(destination),
  );
}
