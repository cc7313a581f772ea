/**
 * One-shot CLI commands log nothing unless asked (BATON_LOG_LEVEL): their stderr is the user's
 * channel, and server logs (stacks, SQL, paths) must not reach it (S27). Errors are printed as a
 * stable code and a short message instead.
 */
export function cliLogLevel(): string | undefined {
  return process.env.BATON_LOG_LEVEL === undefined || process.env.BATON_LOG_LEVEL === '' ? 'silent' : undefined;
}
