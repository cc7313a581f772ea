import { join } from 'node:path';
import { foundOf, mcpJsonEntry, type ClientModule } from './client.js';
import { mcpJsonChange } from './mcp-json.js';
import { readJsonObject, type SetupContext } from './plan.js';

/**
 * Cursor (docs: cursor.com/docs/context/mcp; not run here): `.cursor/mcp.json` at project
 * scope, `{"mcpServers": {name: {command, args, env}}}` or `{url, headers}`; `${env:NAME}` in a
 * value is read from the environment (the key over HTTP).
 */
export const cursor: ClientModule = {
  name: 'cursor',
  about: 'Cursor: .cursor/mcp.json',
  plan(ctx: SetupContext) {
    const file = join(ctx.projectDir, '.cursor', 'mcp.json');
    return [mcpJsonChange(file, ctx.serverName, mcpJsonEntry(ctx.launch, (v) => `\${env:${v}}`))];
  },
  inspect({ projectDir, serverName }) {
    const file = join(projectDir, '.cursor', 'mcp.json');
    const servers = readJsonObject(file).value.mcpServers as Record<string, unknown> | undefined;
    return { file, entry: foundOf(servers?.[serverName]), problems: [] };
  },
};
