import { join } from 'node:path';
import { foundOf, mcpJsonEntry, type ClientModule } from './client.js';
import { mcpJsonChange } from './mcp-json.js';
import { readJsonObject, type SetupContext } from './plan.js';

/**
 * Gemini CLI (docs: google-gemini.github.io/gemini-cli/docs/tools/mcp-server; not run here):
 * `.gemini/settings.json` at project scope, `mcpServers[name]` with `command`, `args`, `env`
 * (stdio) or `httpUrl` and `headers` (Streamable HTTP; `url` would mean SSE); `$NAME` in a
 * value is read from the environment (the key over HTTP).
 */
export const geminiCli: ClientModule = {
  name: 'gemini-cli',
  about: 'Gemini CLI: .gemini/settings.json',
  plan(ctx: SetupContext) {
    const file = join(ctx.projectDir, '.gemini', 'settings.json');
    return [mcpJsonChange(file, ctx.serverName, mcpJsonEntry(ctx.launch, (v) => `$${v}`, 'httpUrl'))];
  },
  inspect({ projectDir, serverName }) {
    const file = join(projectDir, '.gemini', 'settings.json');
    const servers = readJsonObject(file).value.mcpServers as Record<string, unknown> | undefined;
    return { file, entry: foundOf(servers?.[serverName]), problems: [] };
  },
};
