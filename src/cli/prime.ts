import { Option, type Command } from 'commander';
import type { CallMeta, Principal } from '../auth/principal.js';
import { BatonError } from '../core/errors.js';
import { Hub } from '../hub.js';
import { cliLogLevel, hubUrl, locateConfig, requireDataDir, restGet, tokenFromEnv } from './common.js';
import { printable, terminalJson } from './escape.js';

interface PrimeFlags {
  format: 'text' | 'json';
  data?: string;
  config?: string;
  url?: string;
  as?: string;
  inProject?: string;
}

interface PrimeOut {
  brief: string;
  truncated: boolean;
}

const WHO =
  'no agent to prime: set BATON_TOKEN to the agent\'s key (or BATON_TOKEN_FILE to a file holding it), or BATON_AGENT=NAME (or --as NAME) for a local agent on this data dir';

/**
 * `baton prime`: the calling agent's brief (the `prime` op) as plain text, for Claude Code's
 * SessionStart and PreCompact hooks (their stdout goes into the session's context) or a human.
 * Who calls, as for `baton mcp`: BATON_TOKEN (a key, checked like any request) or the file
 * BATON_TOKEN_FILE names (a hook command line can name a file kept out of the repository
 * without holding the key itself), else a local
 * agent named by --as or BATON_AGENT (role BATON_ROLE, default worker) on the data dir. With
 * --url (or BATON_URL) it asks a running hub over REST with BATON_TOKEN instead of opening the
 * data dir: an agent connected over HTTP need not share the hub's machine.
 */
export function registerPrimeCommand(program: Command): void {
  program
    .command('prime')
    .description("The calling agent's brief (≤ 2,000 tokens): held tasks and locks, ready work, urgent mail, handoffs, approvals, rules")
    .addOption(new Option('--format <format>', 'text (for hooks and humans) or json').choices(['text', 'json']).default('text'))
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--url <url>', 'ask a running hub at this URL over REST (with BATON_TOKEN) instead of the data dir; or BATON_URL')
    .option('--as <name>', 'a local agent of this name (default BATON_AGENT), when BATON_TOKEN is not set')
    .option('--in-project <name>', 'project of the local agent (default: default)')
    .action(async (opts: PrimeFlags) => {
      const token = tokenFromEnv();
      const url = opts.url ?? nonEmpty(process.env.BATON_URL);
      const out = url !== undefined ? await overHttp(url, token) : await onDataDir(opts, token);
      // The brief holds agents' text (titles, mail): escaped so it cannot drive a terminal.
      if (opts.format === 'json') process.stdout.write(terminalJson(out) + '\n');
      else process.stdout.write(out.brief.split('\n').map(printable).join('\n'));
    });
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

async function onDataDir(opts: PrimeFlags, token: string | undefined): Promise<PrimeOut> {
  const { config } = requireDataDir(locateConfig(opts, { logLevel: cliLogLevel() }));
  const agent = opts.as ?? nonEmpty(process.env.BATON_AGENT);
  if (token === undefined && agent === undefined) throw new BatonError('unauthenticated', WHO);
  const hub = await Hub.open(config);
  try {
    const principal: Principal =
      token !== undefined ? await hub.authenticate(token) : await hub.localPrincipal(agent!, nonEmpty(process.env.BATON_ROLE) ?? 'worker', opts.inProject);
    const meta: CallMeta = { requestId: hub.newRequestId(), transport: 'cli' };
    return (await hub.call('prime', {}, principal, meta)) as PrimeOut;
  } finally {
    await hub.close();
  }
}

async function overHttp(url: string, token: string | undefined): Promise<PrimeOut> {
  if (token === undefined) throw new BatonError('unauthenticated', 'with --url (or BATON_URL), set BATON_TOKEN to the agent\'s key');
  const body = (await restGet(hubUrl(url), token, '/prime', {}, { timeoutMs: 10_000 })) as Partial<PrimeOut> | null;
  if (typeof body?.brief !== 'string') throw new BatonError('unavailable', 'the hub answered without a brief');
  return { brief: body.brief, truncated: body.truncated === true };
}
