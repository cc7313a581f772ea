import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
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
    const entry = foundOf(servers?.[serverName]);
    // Gemini CLI 0.61 disables a project's servers in a folder the user has not trusted.
    const trusted = (() => {
      try {
        const t = readJsonObject(join(homedir(), '.gemini', 'trustedFolders.json')).value;
        return Object.entries(t).some(([dir, v]) => v === 'TRUST_FOLDER' && (projectDir === dir || projectDir.startsWith(`${dir}/`))) ||
          Object.entries(t).some(([dir, v]) => v === 'TRUST_PARENT' && projectDir.startsWith(`${dirname(dir)}/`));
      } catch {
        return false;
      }
    })();
    const notes = entry !== null && !trusted ? [`Gemini CLI starts this project's servers only once you trust ${projectDir} (start \`gemini\` there once and say yes)`] : [];
    return { file, entry, problems: [], notes };
  },
};
