import { ConfigError } from '../config.js';
import { isBatonError } from '../core/errors.js';
import { DataDirError } from '../os/datadir.js';
import { printable } from './escape.js';
import { runMcp } from './start.js';

// The CLI's entry (bin/baton.js runs it from the bundle). The command line itself (main.ts,
// commander and every command) is loaded only when needed: not for a plain `baton mcp`.

/**
 * `baton mcp` with nothing but `--data`/`--config` (what client configs run at every session
 * start): its flags, read here without building the command line (commander and every command's
 * module: ~10 ms of a `baton mcp` cold start, docs/BENCHMARKS.md); null for anything else, which
 * the command line parses (help, other flags, a flag twice or without a plain value).
 */
export function plainMcpFlags(args: string[]): { data?: string; config?: string } | null {
  const flags: { data?: string; config?: string } = {};
  for (let i = 0; i < args.length; i++) {
    const m = /^--(data|config)(?:=(.*))?$/s.exec(args[i]!);
    if (m === null) return null;
    const name = m[1] as 'data' | 'config';
    const value = m[2] ?? args[++i];
    if (flags[name] !== undefined || value === undefined || value === '' || value.startsWith('-')) return null;
    flags[name] = value;
  }
  return flags;
}

export async function main(argv: string[]): Promise<void> {
  try {
    const mcp = argv[2] === 'mcp' ? plainMcpFlags(argv.slice(3)) : null;
    if (mcp !== null) await runMcp(mcp);
    else await (await import('./main.js')).runProgram(argv);
  } catch (err) {
    if (err instanceof DataDirError) {
      // Its paths come from the working directory, the environment and client configs.
      process.stderr.write(`baton: ${err.message.split('\n').map(printable).join('\n')}\n`);
      process.exitCode = 1;
      return;
    }
    if (err instanceof ConfigError) {
      // One setting per line (printable escapes a newline, so each line on its own).
      process.stderr.write(`baton: ${err.message.split('\n').map(printable).join('\n')}\n`);
      process.exitCode = 2;
      return;
    }
    if (isBatonError(err)) {
      process.stderr.write(`baton: ${err.code}: ${printable(err.message)}\n`);
      // What the message points to (e.g. cursor_expired's "resume from details.cursor"), as HTTP
      // and MCP clients get it.
      if (err.details !== undefined && Object.keys(err.details).length > 0) process.stderr.write(`  details: ${printable(JSON.stringify(err.details))}\n`);
      process.exitCode = err.code === 'invalid_input' || err.code === 'too_large' ? 2 : 1;
      return;
    }
    process.stderr.write(`baton: ${printable(describeFailure(err))}\n`);
    process.exitCode = 1;
  }
}

/**
 * What the user is told about an unexpected failure (S27): the kind of problem, never a message
 * that could carry a path, SQL or a stack. BATON_LOG_LEVEL=debug shows the details.
 */
function describeFailure(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return 'cannot listen: the address is already in use (EADDRINUSE)';
    case 'EADDRNOTAVAIL':
      return 'cannot listen: that address is not available on this machine (EADDRNOTAVAIL)';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${code}): check the data dir, the port and file modes`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `the data dir path is not a usable directory (${code})`;
    case 'ENOENT':
      return 'a file or directory the command needs does not exist (ENOENT)';
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return `the database file is damaged or not a Baton database (${code})`;
    default:
      if (process.env.BATON_LOG_LEVEL === 'debug' || process.env.BATON_LOG_LEVEL === 'trace') {
        process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      }
      return 'unexpected error (set BATON_LOG_LEVEL=debug to see details)';
  }
}
