import { pino, type Logger } from 'pino';

/**
 * Structured JSON logs to stderr (stdout belongs to the MCP stdio protocol). Credentials are
 * redacted by path; op inputs are never logged (the audit keeps their summary instead).
 */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { svc: 'baton' },
      redact: {
        paths: ['key', 'token', '*.key', '*.token', 'req.headers.authorization', 'req.headers["x-api-key"]', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    destination as pino.DestinationStream,
  );
}
