import { join } from 'node:path';
import { foundOf, mcpJsonEntry, type ClientModule } from './client.js';
import { jsonChange, objectAt, readJsonObject, type FileChange, type SetupContext } from './plan.js';

/** `.mcp.json`'s `mcpServers[name]` set to `entry`, every other entry and member kept. */
export function mcpJsonChange(file: string, name: string, entry: Record<string, unknown>): FileChange {
  const { text, value } = readJsonObject(file);
  const before = structuredClone(value);
  objectAt(value, 'mcpServers', file)[name] = entry;
  return jsonChange(file, text, before, value);
}

/**
 * The generic project `.mcp.json` (`{"mcpServers": {name: {command, args, env}}}`) that many
 * clients read. HTTP: `${BATON_TOKEN}` is expanded from the environment by the clients that
 * support it (Claude Code does); the key itself is never written here (the file is committed).
 */
export const mcpJson: ClientModule = {
  name: 'mcp-json',
  about: 'a generic project .mcp.json',
  plan(ctx: SetupContext) {
    const file = join(ctx.projectDir, '.mcp.json');
    return [mcpJsonChange(file, ctx.serverName, mcpJsonEntry(ctx.launch, (v) => `\${${v}}`))];
  },
  inspect({ projectDir, serverName }) {
    const file = join(projectDir, '.mcp.json');
    const servers = readJsonObject(file).value.mcpServers as Record<string, unknown> | undefined;
    return { file, entry: foundOf(servers?.[serverName]), problems: [] };
  },
};
