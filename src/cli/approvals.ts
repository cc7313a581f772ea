import { cliLogLevel, locateConfig, requireDataDir } from './common.js';
import type { Command } from 'commander';
import type { CallMeta } from '../auth/principal.js';
import { Hub } from '../hub.js';
import { printable, terminalJson } from './escape.js';

interface DecideFlags {
  reason?: string;
  data?: string;
  config?: string;
  json?: boolean;
  as: string;
  inProject?: string;
}

interface Decided {
  approval: { id: string; action: string; risk: string; status: string; requested_by: string };
}

/**
 * `baton approve ID` and `baton deny ID`: a human decides an approval on this machine, through the
 * same door as every other call (`approval_decide`, as a local admin).
 */
export function registerApprovalCommands(program: Command): void {
  for (const [name, decision] of [
    ['approve', 'grant'],
    ['deny', 'deny'],
  ] as const) {
    program
      .command(name)
      .description(decision === 'grant' ? 'Grant a pending approval' : 'Deny a pending approval')
      .argument('<id>', 'approval id (apr_…)')
      .option('--reason <text>', 'why (shown to the requester)')
      .option('--json', 'print the result as one line of JSON')
      .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
      .option('--config <file>', 'JSON config file')
      .option('--as <name>', 'the deciding human, as a local admin', 'operator')
      .option('--in-project <name>', 'project of the approval (default: default)')
      .action(async (id: string, opts: DecideFlags) => {
        const { config } = requireDataDir(locateConfig(opts, { logLevel: cliLogLevel() }));
        const hub = await Hub.open(config);
        try {
          const principal = await hub.localPrincipal(opts.as, 'admin', opts.inProject);
          const meta: CallMeta = { requestId: hub.newRequestId(), transport: 'cli' };
          const input = { id, decision, ...(opts.reason === undefined ? {} : { reason: opts.reason }) };
          const out = (await hub.call('approval_decide', input, principal, meta)) as Decided;
          if (opts.json === true) process.stdout.write(terminalJson(out) + '\n');
          else {
            const a = out.approval;
            // The action is the requesting agent's text: escaped, so it cannot drive the terminal.
            process.stdout.write(printable(`${a.id} ${a.status} (${a.risk}: ${a.action}; requested by ${a.requested_by})`) + '\n');
          }
        } finally {
          await hub.close();
        }
      });
  }
}
