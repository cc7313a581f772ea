import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ClientModule, FoundEntry } from './client.js';
import { readText, type SetupContext } from './plan.js';
import { readServer, replaceServer, serverTable, tableHas, type TomlValue } from './toml.js';

/**
 * Codex CLI (observed with 0.171.0): `[mcp_servers.NAME]` with `command`, `args` and an
 * `[mcp_servers.NAME.env]` table (stdio), or `url` and `bearer_token_env_var` (HTTP), in
 * - the project's `.codex/config.toml` (scope `project`, the default): read only in a project
 *   the user has trusted in Codex (`[projects."<dir>"] trust_level = "trusted"` in the user's
 *   config, which Codex asks for on the first run in a folder; setup leaves that answer to the
 *   user). Each worktree gets its own file, so each worktree's agent is its own;
 * - `$CODEX_HOME/config.toml` (default ~/.codex; scope `user`): private, read everywhere, one
 *   `baton` entry for every project of the user (use --name to keep several).
 * Only our table is rewritten; everything else in the file stays byte for byte (see toml.ts).
 */
export function codexConfigFile(env: NodeJS.ProcessEnv, scope: 'project' | 'user' = 'user', projectDir = ''): string {
  if (scope === 'project') return join(projectDir, '.codex', 'config.toml');
  const home = env.CODEX_HOME !== undefined && env.CODEX_HOME !== '' ? resolve(env.CODEX_HOME) : join(homedir(), '.codex');
  return join(home, 'config.toml');
}

export const codex: ClientModule = {
  name: 'codex',
  about: 'Codex CLI: [mcp_servers.baton] in .codex/config.toml (--scope user: $CODEX_HOME/config.toml)',
  plan(ctx: SetupContext) {
    const file = codexConfigFile(ctx.env, ctx.scope, ctx.projectDir);
    const fields: Record<string, TomlValue> =
      ctx.launch.kind === 'stdio'
        ? { command: ctx.launch.command, args: ctx.launch.args, env: ctx.launch.env }
        : { url: ctx.launch.url, bearer_token_env_var: ctx.launch.tokenEnv };
    const before = readText(file);
    const after = replaceServer(before ?? '', ctx.serverName, serverTable(ctx.serverName, fields), file);
    return [{ path: file, before, after: before !== null && after === before ? before : after }];
  },
  inspect({ projectDir, serverName, env }) {
    // The project's file first (Codex lets it override the user's), then the user's.
    let file = codexConfigFile(env, 'project', projectDir);
    let text = readText(file);
    let found = text === null ? null : readServer(text, serverName);
    if (found === null) {
      file = codexConfigFile(env, 'user');
      text = readText(file);
      found = text === null ? null : readServer(text, serverName);
    }
    if (found === null) return { file, entry: null, problems: [] };
    const notes: string[] = [];
    if (file === codexConfigFile(env, 'project', projectDir)) {
      const user = readText(codexConfigFile(env, 'user')) ?? '';
      if (!tableHas(user, ['projects', projectDir], 'trust_level', 'trusted')) {
        notes.push(`Codex reads ${file} only once you trust ${projectDir} (start \`codex\` there once and say yes)`);
      }
    }
    const entry: FoundEntry = {
      ...(typeof found.command === 'string' ? { command: found.command } : {}),
      ...(Array.isArray(found.args) ? { args: found.args as string[] } : {}),
      ...(found.env !== undefined && typeof found.env === 'object' && !Array.isArray(found.env) ? { env: found.env as Record<string, string> } : {}),
      ...(typeof found.url === 'string' ? { url: found.url } : {}),
    };
    return { file, entry, problems: [], notes };
  },
};
