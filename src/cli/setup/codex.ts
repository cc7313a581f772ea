import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ClientModule, FoundEntry } from './client.js';
import { readText, type SetupContext } from './plan.js';
import { readServer, replaceServer, serverTable, type TomlValue } from './toml.js';

/**
 * Codex CLI (observed with 0.17x, /work/shared/CLIENTS.md): servers live in
 * `$CODEX_HOME/config.toml` (default ~/.codex), a private per-user file: `[mcp_servers.NAME]`
 * with `command`, `args` and an `[mcp_servers.NAME.env]` table (stdio), or `url` and
 * `bearer_token_env_var` (HTTP). Only our table is rewritten; everything else in the file stays
 * byte for byte (see toml.ts).
 */
export function codexConfigFile(env: NodeJS.ProcessEnv): string {
  const home = env.CODEX_HOME !== undefined && env.CODEX_HOME !== '' ? resolve(env.CODEX_HOME) : join(homedir(), '.codex');
  return join(home, 'config.toml');
}

export const codex: ClientModule = {
  name: 'codex',
  about: 'Codex CLI: [mcp_servers.baton] in $CODEX_HOME/config.toml (~/.codex)',
  plan(ctx: SetupContext) {
    const file = codexConfigFile(ctx.env);
    const fields: Record<string, TomlValue> =
      ctx.launch.kind === 'stdio'
        ? { command: ctx.launch.command, args: ctx.launch.args, env: ctx.launch.env }
        : { url: ctx.launch.url, bearer_token_env_var: ctx.launch.tokenEnv };
    const before = readText(file);
    const after = replaceServer(before ?? '', ctx.serverName, serverTable(ctx.serverName, fields), file);
    return [{ path: file, before, after: before !== null && after === before ? before : after }];
  },
  inspect({ serverName, env }) {
    const file = codexConfigFile(env);
    const text = readText(file);
    const found = text === null ? null : readServer(text, serverName);
    if (found === null) return { file, entry: null, problems: [] };
    const entry: FoundEntry = {
      ...(typeof found.command === 'string' ? { command: found.command } : {}),
      ...(Array.isArray(found.args) ? { args: found.args as string[] } : {}),
      ...(found.env !== undefined && typeof found.env === 'object' && !Array.isArray(found.env) ? { env: found.env as Record<string, string> } : {}),
      ...(typeof found.url === 'string' ? { url: found.url } : {}),
    };
    return { file, entry, problems: [] };
  },
};
