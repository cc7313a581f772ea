import { homedir } from 'node:os';
import { join } from 'node:path';
import { foundOf, mcpJsonEntry, type ClientModule } from './client.js';
import { mcpJsonChange } from './mcp-json.js';
import { jsonChange, objectAt, readJsonObject, type FileChange, type SetupContext } from './plan.js';
import { BatonError } from '../../core/errors.js';
import { sq } from './shell.js';

/**
 * Claude Code (observed with 2.1.x, /work/shared/CLIENTS.md):
 * - `.mcp.json` (project scope, committed): the server, `"type": "stdio"`; its env names the
 *   private key file (BATON_TOKEN_FILE), never the key. HTTP: a `headersHelper` that reads the
 *   key from that file.
 * - `.claude/settings.local.json` (private, per user): `enabledMcpjsonServers` trusts the server,
 *   else `claude mcp list` shows it "Pending approval" and sessions do not start it (checked with
 *   2.1.332; a fresh user must also have accepted Claude Code's "trust this folder" prompt once,
 *   which Claude Code keeps in ~/.claude.json and setup leaves to the user). Setting it is what
 *   the user asks for by running `baton setup`. Its `env.BATON_AGENT` names the agent for
 *   `baton guard`.
 * - `.claude/settings.json` (project): `SessionStart` and `PreCompact` hooks running `baton
 *   prime`, whose stdout Claude Code adds to the session's context (a restarted or compacted
 *   agent learns where it stands).
 */
export const HOOK_EVENTS = ['SessionStart', 'PreCompact'] as const;

/** A hook command of ours: runs Baton's `prime` (recognised to update it, never to remove others). */
const isPrimeHook = (command: unknown): boolean => typeof command === 'string' && /\bprime\b/.test(command) && /baton/.test(command);

interface HookGroup {
  matcher?: string;
  hooks: { type: string; command: string }[];
}

function hooksChange(file: string, command: string): FileChange {
  const { text, value } = readJsonObject(file);
  const before = structuredClone(value);
  const hooks = objectAt(value, 'hooks', file);
  for (const event of HOOK_EVENTS) {
    const groups = hooks[event] ?? [];
    if (!Array.isArray(groups)) throw new BatonError('invalid_input', `${file}: hooks.${event} is not a list; fix it (nothing was changed)`);
    let ours = false;
    for (const g of groups as HookGroup[]) {
      for (const h of Array.isArray(g?.hooks) ? g.hooks : []) {
        if (h?.type === 'command' && isPrimeHook(h.command)) {
          if (!ours) h.command = command;
          ours = true;
        }
      }
    }
    if (!ours) (groups as HookGroup[]).push({ hooks: [{ type: 'command', command }] });
    hooks[event] = groups;
  }
  return jsonChange(file, text, before, value);
}

/**
 * The private settings: trust for the server, and `env.BATON_AGENT` (Claude Code sets `env` for
 * the commands a session runs), so that `baton guard`'s hooks know which agent commits from here.
 */
function localChange(file: string, server: string, agent: string): FileChange {
  const { text, value } = readJsonObject(file);
  const before = structuredClone(value);
  const list = value.enabledMcpjsonServers ?? [];
  if (!Array.isArray(list)) throw new BatonError('invalid_input', `${file}: enabledMcpjsonServers is not a list; fix it (nothing was changed)`);
  if (!list.includes(server)) value.enabledMcpjsonServers = [...(list as unknown[]), server];
  objectAt(value, 'env', file).BATON_AGENT = agent;
  return jsonChange(file, text, before, value);
}

export const claudeCode: ClientModule = {
  name: 'claude-code',
  about: 'Claude Code: .mcp.json, trust in .claude/settings.local.json, prime hooks in .claude/settings.json',
  plan(ctx: SetupContext) {
    // HTTP: Claude Code runs `headersHelper` (a shell command printing a JSON object of headers)
    // before connecting, so the key is read from its private file: nothing to export, nothing in
    // the committed file (checked with 2.1.332 against `baton serve`: without it, a 401).
    const entry =
      ctx.launch.kind === 'http'
        ? { url: ctx.launch.url, headersHelper: `sed -n 's/^BATON_TOKEN=\\(.*\\)$/{"Authorization": "Bearer \\1"}/p' ${sq(ctx.tokenFile)}` }
        : mcpJsonEntry(ctx.launch, (v) => `\${${v}}`);
    return [
      mcpJsonChange(join(ctx.projectDir, '.mcp.json'), ctx.serverName, { type: ctx.launch.kind, ...entry }),
      localChange(join(ctx.projectDir, '.claude', 'settings.local.json'), ctx.serverName, ctx.agent),
      hooksChange(join(ctx.projectDir, '.claude', 'settings.json'), ctx.primeCommand),
    ];
  },
  inspect({ projectDir, serverName }) {
    const file = join(projectDir, '.mcp.json');
    const servers = readJsonObject(file).value.mcpServers as Record<string, unknown> | undefined;
    const entry = foundOf(servers?.[serverName]);
    const problems: string[] = [];
    if (entry === null) return { file, entry, problems };
    const local = readJsonObject(join(projectDir, '.claude', 'settings.local.json')).value;
    const trusted =
      local.enableAllProjectMcpServers === true || (Array.isArray(local.enabledMcpjsonServers) && local.enabledMcpjsonServers.includes(serverName));
    if (!trusted) problems.push(`.claude/settings.local.json does not enable "${serverName}": Claude Code leaves it pending approval`);
    const hooks = readJsonObject(join(projectDir, '.claude', 'settings.json')).value.hooks as Record<string, unknown> | undefined;
    for (const event of HOOK_EVENTS) {
      const groups = hooks?.[event];
      const has =
        Array.isArray(groups) && (groups as HookGroup[]).some((g) => Array.isArray(g?.hooks) && g.hooks.some((h) => h?.type === 'command' && isPrimeHook(h.command)));
      if (!has) problems.push(`.claude/settings.json has no ${event} hook running \`baton prime\``);
    }
    // Claude Code keeps the user's "trust this folder" answer in ~/.claude.json (checked with 2.1.332).
    const notes: string[] = [];
    try {
      const projects = readJsonObject(join(homedir(), '.claude.json')).value.projects as Record<string, { hasTrustDialogAccepted?: unknown }> | undefined;
      if (projects?.[projectDir]?.hasTrustDialogAccepted !== true) {
        notes.push(`Claude Code starts .mcp.json servers only once you trust ${projectDir} (start \`claude\` there once and say yes)`);
      }
    } catch {
      // an unreadable ~/.claude.json: nothing to say
    }
    return { file, entry, problems, notes };
  },
};
