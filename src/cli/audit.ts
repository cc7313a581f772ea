import { cliLogLevel, locateConfig, requireDataDir } from './common.js';
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CallMeta } from '../auth/principal.js';
import { Hub } from '../hub.js';
import { printable, terminalJson } from './escape.js';
import type { VerifyAnswer } from '../ops/audit.js';

interface CommonFlags {
  data?: string;
  config?: string;
  json?: boolean;
}

interface VerifyFlags extends CommonFlags {
  anchor?: string;
  sinceAnchor?: boolean;
}

interface QueryFlags extends CommonFlags {
  projectless?: boolean;
  since?: string;
  until?: string;
  op?: string;
  outcome?: string;
  principal?: string;
  severity?: string;
  event?: string;
  project?: string;
  limit?: string;
  cursor?: string;
}

/** How a message names the place: the chain and the position in it (and the row id when there is a row). */
function where(v: VerifyAnswer): string {
  const chain = v.chain === null ? 'the trail' : v.chain === 'legacy' ? 'the legacy chain' : v.chain === 'server' ? 'the server chain' : `chain ${v.chain}`;
  if (v.first_bad_seq === null) return chain;
  const row = v.first_bad_id !== null && v.chain !== 'legacy' ? ` (row ${String(v.first_bad_id)})` : '';
  return `${chain} at position ${String(v.first_bad_seq)}${row}`;
}

/** `--anchor`: the anchor text itself, a JSON object holding it (as `anchor` prints), or a file with either. */
function anchorArg(value: string): string {
  let text = value.trim();
  if (!text.startsWith('baton-audit-anchor:') && !text.startsWith('{') && existsSync(text)) text = readFileSync(text, 'utf8').trim();
  if (text.startsWith('{')) {
    try {
      const v = JSON.parse(text) as { anchor?: unknown };
      if (typeof v.anchor === 'string') return v.anchor;
    } catch {
      // fall through: refused by the op with a clear message
    }
  }
  return text;
}

interface Page {
  rows: {
    id: string;
    at: string;
    principal: string | null;
    role: string | null;
    op: string;
    target: string | null;
    outcome: string;
    code: string | null;
    severity: string | null;
    event: string | null;
    transport: string;
  }[];
  next_cursor: string | null;
}

/** Opens the hub of an existing data dir (never creates one) and runs `fn` as the local operator (admin). */
async function asOperator<T>(flags: CommonFlags, fn: (hub: Hub, meta: CallMeta) => Promise<T>): Promise<T> {
  const { config } = requireDataDir(locateConfig(flags, { logLevel: cliLogLevel() }));
  const hub = await Hub.open(config);
  try {
    return await fn(hub, { requestId: hub.newRequestId(), transport: 'cli' });
  } finally {
    await hub.close();
  }
}

/**
 * `baton audit verify` (exit 1 and the first bad row when the hash chain does not hold) and
 * `baton audit query` (the trail, newest first). Both run through the one door as the local
 * operator, a server admin of this data dir (the file permissions of the data dir are the boundary).
 */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('Audit trail: verify its hash chain, query it');

  audit
    .command('verify')
    .description('Verify the audit hash chain (and an anchor kept elsewhere); exit 1 naming the first bad row')
    .option('--anchor <file|json|text>', 'an anchor printed by `baton audit anchor`: the trail must still reach it')
    .option('--since-anchor', 'with --anchor: check only the rows written after it (incremental)')
    .option('--json', 'print the result as one line of JSON')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .action(async (opts: VerifyFlags) => {
      const input: Record<string, unknown> = opts.anchor === undefined ? {} : { anchor: anchorArg(opts.anchor) };
      if (opts.sinceAnchor === true) input.since_anchor = true;
      const v = await asOperator(opts, async (hub, meta) => {
        const principal = await hub.localPrincipal('operator', 'admin');
        return (await hub.call('audit_verify', input, principal, meta)) as VerifyAnswer;
      });
      if (opts.json === true) process.stdout.write(JSON.stringify(v) + '\n');
      else if (v.ok) process.stdout.write(`audit chain ok (${v.rows} rows)\n`);
      else if (v.reason === 'head_unkeyed') {
        process.stdout.write(`audit chain head not keyed yet (${v.rows} rows checked)\n`);
        process.stderr.write('baton: after an upgrade the legacy head is keyed when the hub next starts (any baton command); verify again. Seen at any other time, the head was tampered with.\n');
      } else if (v.first_bad_seq === null) process.stdout.write(`audit chain BROKEN: ${where(v)}: its ${v.reason ?? 'end'} does not hold (${v.rows} rows checked)\n`);
      else process.stdout.write(`audit chain BROKEN: ${where(v)} (${v.rows} rows checked)\n`);
      if (!v.ok) {
        if (opts.json !== true && v.reason !== 'head_unkeyed') {
          const what = v.reason === 'head' || v.reason === 'exported_anchor' ? 'rows were removed from the end (or the trail was rolled back)' : 'a row was altered, removed or forged';
          process.stderr.write(`baton: audit ${where(v)}: ${what}\n`);
        }
        process.exitCode = 1;
      }
    });

  audit
    .command('anchor')
    .description("Verify the chains and print an anchor of their ends (each chain's position and hash, with an HMAC) to store elsewhere")
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .action(async (opts: CommonFlags) => {
      const v = await asOperator(opts, async (hub, meta) => {
        const principal = await hub.localPrincipal('operator', 'admin');
        return (await hub.call('audit_verify', {}, principal, meta)) as VerifyAnswer;
      });
      if (!v.ok || v.anchor === null) {
        process.stderr.write(`baton: the audit trail does not verify (${where(v)}); no anchor printed\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(
        JSON.stringify({ anchor: v.anchor, rows: v.rows, at: new Date().toISOString() }) + '\n',
      );
    });

  audit
    .command('query')
    .description('Audit rows of a project, newest first')
    .option('--since <iso>', 'from this time (ISO 8601)')
    .option('--until <iso>', 'before this time (ISO 8601)')
    .option('--op <name>', 'one op')
    .option('--outcome <outcome>', 'ok, denied, invalid, limited or error')
    .option('--principal <agent>', 'agent id or name')
    .option('--severity <level>', 'info, low, medium, high or critical')
    .option('--event <event>', 'AUTH_FAILURE, PERMISSION_DENIED, RATE_LIMIT_EXCEEDED, INVALID_INPUT or SUSPICIOUS_ACTIVITY')
    .option('--project <name>', 'the project (default: default)')
    .option('--projectless', 'rows of no project: failed authentication, throttling')
    .option('--limit <n>', 'rows (1-500, default 100)')
    .option('--cursor <cursor>', 'next_cursor of the previous page')
    .option('--json', 'print the result as one line of JSON')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .action(async (opts: QueryFlags) => {
      const input: Record<string, unknown> = {};
      for (const k of ['since', 'until', 'op', 'outcome', 'principal', 'severity', 'event', 'project', 'cursor'] as const) {
        if (opts[k] !== undefined) input[k] = opts[k];
      }
      if (opts.projectless === true) input.no_project = true;
      if (opts.limit !== undefined) input.limit = /^\d+$/.test(opts.limit) ? Number(opts.limit) : opts.limit;
      const page = await asOperator(opts, async (hub, meta) => {
        const principal = await hub.localPrincipal('operator', 'admin');
        return (await hub.call('audit_query', input, principal, meta)) as Page;
      });
      if (opts.json === true) {
        process.stdout.write(terminalJson(page) + '\n');
        return;
      }
      for (const r of page.rows) {
        const code = r.code === null ? '' : ` ${r.code}`;
        const event = r.event === null ? '' : ` [${r.event}]`;
        process.stdout.write(
          printable(`${r.id} ${r.at} ${r.severity ?? '-'} ${r.op} ${r.outcome}${code}${event} by ${r.principal ?? '-'} (${r.role ?? '-'}, ${r.transport})` +
            `${r.target === null ? '' : ` on ${r.target}`}`) + '\n',
        );
      }
      if (page.next_cursor !== null) process.stderr.write(`more: --cursor ${page.next_cursor}\n`);
    });
}
