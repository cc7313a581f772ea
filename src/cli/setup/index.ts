import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { CallMeta, Principal } from '../../auth/principal.js';
import { looksLikeKey } from '../../auth/keys.js';
import { BatonError, isBatonError } from '../../core/errors.js';
import { Hub } from '../../hub.js';
import { VERSION } from '../../version.js';
import { cliLogLevel, locateConfig, readTokenFile, requireDataDir, hubExists } from '../common.js';
import { printable } from '../escape.js';
import { claudeCode } from './claude-code.js';
import type { ClientModule, FoundEntry } from './client.js';
import { codex } from './codex.js';
import { cursor } from './cursor.js';
import { geminiCli } from './gemini-cli.js';
import { mcpJson } from './mcp-json.js';
import { apply, changed, describe, readText, type Drift, type FileChange, type Launch, type SetupContext } from './plan.js';
import { setProfile } from './profile.js';
import { sq } from './shell.js';

export const CLIENTS: readonly ClientModule[] = [claudeCode, codex, cursor, geminiCli, mcpJson];

const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const PROJECT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const CAPABILITY = /^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,63}$/;
const DEFAULT_PROJECT = 'default';
const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/baton.js');

export interface SetupFlags {
  data?: string;
  config?: string;
  agent?: string;
  role?: string;
  capabilities?: string;
  inProject?: string;
  http?: string;
  name?: string;
  projectDir?: string;
  dryRun?: boolean;
  check?: boolean;
  scope?: string;
}


/** The project's directory: the git work tree's top (each worktree its own), else the working directory. */
export function projectDirOf(cwd: string): string {
  try {
    const top = execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return top === '' ? cwd : top;
  } catch {
    return cwd;
  }
}

/** Where an agent's key is kept: in the data dir (0700), never in the project's files. */
export function tokenFileOf(dataDir: string, project: string, agent: string): string {
  return project === DEFAULT_PROJECT ? join(dataDir, 'agents', `${agent}.env`) : join(dataDir, 'agents', project, `${agent}.env`);
}

/**
 * How clients start `baton mcp` without `baton` on PATH (Claude Code fails with ENOENT
 * otherwise): this Node binary and this package's bin by absolute path; from an npx cache (a
 * directory npm may delete) `npx -y -p baton-hub@VERSION baton mcp` instead.
 */
export function stdioLaunch(dataDir: string, tokenFile: string): Launch {
  const env = { BATON_TOKEN_FILE: tokenFile };
  if (BIN.includes(`${'/'}_npx${'/'}`)) {
    return { kind: 'stdio', command: 'npx', args: ['-y', '-p', `baton-hub@${VERSION}`, 'baton', 'mcp', '--data', dataDir], env };
  }
  return { kind: 'stdio', command: process.execPath, args: [BIN, 'mcp', '--data', dataDir], env };
}

/** The hook command: loads the agent's key from its private file, then prints `baton prime`. */
export function primeCommandOf(launch: Launch, dataDir: string, tokenFile: string): string {
  const base = launch.kind === 'stdio' && launch.command === 'npx' ? ['npx', '-y', '-p', `baton-hub@${VERSION}`, 'baton'] : [process.execPath, BIN];
  return `set -a && . ${sq(tokenFile)} && set +a && exec ${[...base, 'prime', '--data', dataDir].map(sq).join(' ')}`;
}

function gitignoreChange(projectDir: string): FileChange {
  const path = join(projectDir, '.gitignore');
  const before = readText(path);
  const has = (before ?? '').split('\n').some((l) => /^\/?\.baton\/?\s*$/.test(l));
  if (has) return { path, before, after: before! };
  const body = before === null || before === '' ? '' : before.endsWith('\n') ? before : `${before}\n`;
  return { path, before, after: `${body}# Baton's data dir and agents' keys (baton setup)\n.baton/\n` };
}

function keyFileText(agent: string, project: string, key: string): string {
  return (
    `# Baton key of agent ${agent} (project ${project}), written by \`baton setup\`.\n` +
    `# Private (mode 0600): never commit or share it. Clients read it through BATON_TOKEN_FILE.\n` +
    `BATON_TOKEN=${key}\n`
  );
}

function checkFlags(flags: SetupFlags, client: string): { agent: string; role: string; project: string; capabilities: string[]; serverName: string } {
  const agent = flags.agent ?? client;
  if (!AGENT_NAME.test(agent)) throw new BatonError('invalid_input', '--agent: expected an agent name (letters, digits, . _ @ -; at most 64)');
  const role = flags.role ?? 'worker';
  if (!/^[a-z][a-z0-9_-]{0,31}$/.test(role)) throw new BatonError('invalid_input', '--role: expected a role name');
  const project = flags.inProject ?? DEFAULT_PROJECT;
  if (!PROJECT_NAME.test(project)) throw new BatonError('invalid_input', '--in-project: expected a project name');
  const capabilities = (flags.capabilities ?? '').split(',').map((c) => c.trim()).filter((c) => c !== '');
  const bad = capabilities.find((c) => !CAPABILITY.test(c));
  if (bad !== undefined || capabilities.length > 20) throw new BatonError('invalid_input', '--capabilities: expected up to 20 capability names, comma-separated');
  const serverName = flags.name ?? 'baton';
  if (!SERVER_NAME.test(serverName)) throw new BatonError('invalid_input', '--name: expected a server name (letters, digits, _ -)');
  if (flags.http !== undefined) {
    let url: URL;
    try {
      url = new URL(flags.http);
    } catch {
      throw new BatonError('invalid_input', '--http: expected a URL such as http://127.0.0.1:7410/mcp');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BatonError('invalid_input', '--http: expected an http(s) URL');
    if (url.username !== '' || url.password !== '') throw new BatonError('invalid_input', '--http: credentials in the URL would be written to the config; leave them out');
  }
  return { agent, role, project, capabilities, serverName };
}

/** Multi-line text made inert for a terminal, line by line. */
const lines = (text: string): string => text.split('\n').map(printable).join('\n');

const meta = (hub: Hub): CallMeta => ({ requestId: hub.newRequestId(), transport: 'cli' });

/** The agent's existing key if it still authenticates as that agent in that project; else null. */
async function liveKey(hub: Hub, file: string, agent: string, project: string): Promise<string | null> {
  if (!existsSync(file)) return null;
  let key: string;
  try {
    key = readTokenFile(file);
  } catch {
    return null;
  }
  if (!looksLikeKey(key)) return null;
  try {
    const p = await hub.authenticate(key);
    return p.agentName === agent && p.projectName === project ? key : null;
  } catch (err) {
    if (isBatonError(err) && err.code === 'unauthenticated') return null;
    throw err;
  }
}

async function runSetup(clientName: string, flags: SetupFlags): Promise<void> {
  const client = CLIENTS.find((c) => c.name === clientName);
  if (client === undefined) {
    throw new BatonError('invalid_input', `unknown client "${clientName}"; one of: ${CLIENTS.map((c) => c.name).join(', ')}`);
  }
  const { agent, role, project, capabilities, serverName } = checkFlags(flags, client.name);
  const scope = flags.scope ?? 'project';
  if (scope !== 'project' && scope !== 'user') throw new BatonError('invalid_input', '--scope: expected project or user');
  if (scope === 'user' && client.name !== 'codex') throw new BatonError('invalid_input', `--scope user: only codex has a user-scope config here; ${client.name} is set up in the project`);
  const { config, dataDir } = requireDataDir(locateConfig(flags, { logLevel: cliLogLevel() }));
  const projectDir = flags.projectDir !== undefined ? resolve(flags.projectDir) : projectDirOf(process.cwd());
  const tokenFile = tokenFileOf(dataDir, project, agent);
  const launch: Launch = flags.http !== undefined ? { kind: 'http', url: flags.http, tokenEnv: 'BATON_TOKEN' } : stdioLaunch(dataDir, tokenFile);
  const ctx: SetupContext = {
    projectDir,
    dataDir,
    agent,
    tokenFile,
    serverName,
    launch,
    primeCommand: primeCommandOf(launch, dataDir, tokenFile),
    env: process.env,
    scope,
  };
  // Every file is read and checked before anything is written or any key is minted.
  const changes = [...client.plan(ctx), gitignoreChange(projectDir)];
  const hub = await Hub.open(config);
  try {
    let key = await liveKey(hub, tokenFile, agent, project);
    const keyBefore = readText(tokenFile);
    const keyChange = (k: string): FileChange => ({ path: tokenFile, before: keyBefore, after: keyFileText(agent, project, k), mode: 0o600, secret: true });
    if (flags.dryRun === true) {
      const all = [key === null ? keyChange('(a new key)') : keyChange(key), ...changes];
      process.stdout.write(lines(describe(all, projectDir)));
      process.stdout.write(key === null ? `a new key would be minted for agent ${agent} (role ${role}, project ${project})\n` : `agent ${agent} keeps its key\n`);
      process.stdout.write('dry run: nothing was written\n');
      return;
    }
    let minted = false;
    const operator: Principal = await hub.localPrincipal('operator', 'admin', project);
    const known = ((await hub.call('agent_list', {}, operator, meta(hub))) as { agents: { name: string; capabilities: string[] }[] }).agents.find(
      (a) => a.name === agent,
    );
    if (key === null) {
      const exists = known !== undefined;
      const out = (await hub.call(
        'token_create',
        { name: agent, role, ...(project === DEFAULT_PROJECT ? {} : { project }), ...(exists ? { for_existing_agent: true } : {}) },
        operator,
        meta(hub),
      )) as { key: string };
      key = out.key;
      minted = true;
    }
    const principal = await hub.authenticate(key);
    // Without --capabilities an existing agent keeps its own (a re-run changes nothing).
    await setProfile(hub, principal.agentId, client.name, flags.capabilities === undefined ? (known?.capabilities ?? []) : capabilities);
    const all = [keyChange(key), ...changes];
    apply(all);
    process.stdout.write(lines(describe(all.filter(changed), projectDir)));
    const n = all.filter(changed).length;
    process.stderr.write(
      `baton setup ${client.name}: agent ${agent} (role ${principal.role}, project ${project}); ${minted ? 'a new key' : 'its existing key'} is in ${tokenFile} (0600); ` +
        `${n === 0 ? 'nothing changed' : `${n} file${n === 1 ? '' : 's'} written`}\n`,
    );
    // How the agent is woken when something concerns it (Claude Code: its Monitor tool turns each line into an event).
    const bin = launch.kind === 'stdio' && launch.command === 'npx' ? ['npx', '-y', '-p', `baton-hub@${VERSION}`, 'baton'] : [process.execPath, BIN];
    process.stderr.write(`to wake the agent on mail, ready tasks, approvals and expiring leases, run in its session: ${[...bin, 'watch', '--agent', agent, ...(project === DEFAULT_PROJECT ? [] : ['--in-project', project]), '--data', dataDir].map(sq).join(' ')}\n`);
  } finally {
    await hub.close();
  }
}

/** The `--data` value in a server's args. */
const dataArg = (args: readonly string[] | undefined): string | undefined => {
  const i = args?.indexOf('--data') ?? -1;
  return i >= 0 ? args?.[i + 1] : undefined;
};

async function checkEntry(client: string, file: string, entry: FoundEntry, expectedDataDir: string | null): Promise<Drift[]> {
  const drift = (problem: string): Drift => ({ client, file, problem });
  if (entry.url !== undefined) return []; // HTTP: the key is in the user's environment, not ours to check
  const out: Drift[] = [];
  if (entry.command === undefined) return [drift('the server entry has no command')];
  if (isAbsolute(entry.command) && !existsSync(entry.command)) out.push(drift(`its command ${entry.command} does not exist`));
  const bin = entry.args?.[0];
  if (entry.command !== 'npx' && bin !== undefined && isAbsolute(bin) && !existsSync(bin)) out.push(drift(`Baton's bin ${bin} does not exist (moved or removed)`));
  const data = dataArg(entry.args);
  const located = data === undefined ? null : locateConfig({ data }, { logLevel: cliLogLevel() });
  if (data === undefined || located === null) out.push(drift('its args name no --data directory'));
  // A PostgreSQL hub's data dir holds its secrets, not baton.db (hubExists knows both).
  else if (!hubExists(located.config)) out.push(drift(`its data dir ${data} holds no Baton hub (moved or removed)`));
  else if (expectedDataDir !== null && resolve(data) !== resolve(expectedDataDir)) out.push(drift(`it uses the data dir ${data}, not ${expectedDataDir} (moved data dir)`));
  const tokenFile = entry.env?.BATON_TOKEN_FILE;
  if (tokenFile === undefined) {
    if (entry.env?.BATON_TOKEN === undefined) out.push(drift('its env names no BATON_TOKEN_FILE'));
    else out.push(drift('its env holds a key in clear (BATON_TOKEN); run `baton setup` again to move it to a private file'));
    return out;
  }
  let key: string;
  try {
    key = readTokenFile(tokenFile);
  } catch {
    out.push(drift(`its key file ${tokenFile} is missing or unreadable`));
    return out;
  }
  if (located === null || !hubExists(located.config)) return out;
  const hub = await Hub.open(located.config);
  try {
    await hub.authenticate(key);
  } catch (err) {
    if (isBatonError(err) && err.code === 'unauthenticated') out.push(drift(`its key (in ${tokenFile}) is revoked, expired or unknown: stale key`));
    else throw err;
  } finally {
    await hub.close();
  }
  return out;
}

async function runCheck(clientName: string | undefined, flags: SetupFlags): Promise<void> {
  const wanted = clientName === undefined ? CLIENTS : CLIENTS.filter((c) => c.name === clientName);
  if (wanted.length === 0) throw new BatonError('invalid_input', `unknown client "${clientName}"; one of: ${CLIENTS.map((c) => c.name).join(', ')}`);
  const serverName = flags.name ?? 'baton';
  if (!SERVER_NAME.test(serverName)) throw new BatonError('invalid_input', '--name: expected a server name');
  const projectDir = flags.projectDir !== undefined ? resolve(flags.projectDir) : projectDirOf(process.cwd());
  const loc = locateConfig(flags, { logLevel: cliLogLevel() });
  const expected = loc.source === 'new' ? null : loc.dataDir;
  const drifts: Drift[] = [];
  let found = 0;
  for (const c of wanted) {
    const seen = c.inspect({ projectDir, serverName, env: process.env, primeCommand: null });
    if (seen.entry === null) {
      if (clientName !== undefined) drifts.push({ client: c.name, file: seen.file, problem: `no "${serverName}" server: run \`baton setup ${c.name}\`` });
      continue;
    }
    found++;
    const mine = [...seen.problems.map((problem) => ({ client: c.name, file: seen.file, problem })), ...(await checkEntry(c.name, seen.file, seen.entry, expected))];
    drifts.push(...mine);
    if (mine.length === 0) process.stdout.write(printable(`ok     ${c.name} (${seen.file})`) + '\n');
    for (const n of seen.notes ?? []) process.stdout.write(printable(`note   ${c.name}: ${n}`) + '\n');
  }
  for (const d of drifts) process.stdout.write(printable(`drift  ${d.client} (${d.file}): ${d.problem}`) + '\n');
  if (found === 0 && clientName === undefined) {
    process.stdout.write(`drift  no client is set up for "${serverName}" here: run \`baton setup <client>\`\n`);
    process.exitCode = 1;
  }
  if (drifts.length > 0) process.exitCode = 1;
}

export function registerSetupCommand(program: Command): void {
  program
    .command('setup')
    .description(`Configure an agent client for Baton: ${CLIENTS.map((c) => c.name).join(', ')} (mints the agent's key, writes the client's config and hooks)`)
    .argument('[client]', CLIENTS.map((c) => `${c.name}: ${c.about}`).join('; '))
    .option('--agent <name>', 'the agent name (default: the client name)')
    .option('--role <role>', 'role of a new agent', 'worker')
    .option('--capabilities <a,b>', "the agent's capabilities, comma-separated")
    .option('--in-project <name>', 'Baton project (default: default)')
    .option('--http <url>', 'connect over Streamable HTTP to this URL (the key then comes from $BATON_TOKEN) instead of stdio')
    .option('--name <server>', "the server's name in the client's config", 'baton')
    .option('--project-dir <dir>', 'where project-scope configs go (default: the git work tree top, else here)')
    .option('--scope <scope>', "codex: project (.codex/config.toml, the default; Codex reads it in trusted projects) or user ($CODEX_HOME/config.toml)")
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--dry-run', 'print what would change; write nothing, mint no key')
    .option('--check', 'report drift (stale key, moved data dir, missing hook); exit 1 when there is any')
    .action(async (client: string | undefined, opts: SetupFlags) => {
      if (opts.check === true) return runCheck(client, opts);
      if (client === undefined) throw new BatonError('invalid_input', `name a client: one of ${CLIENTS.map((c) => c.name).join(', ')} (or pass --check)`);
      return runSetup(client, opts);
    });
}
