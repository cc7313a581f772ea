import { Command, CommanderError, Option } from 'commander';
import type { CallMeta } from '../auth/principal.js';
import { BatonError } from '../core/errors.js';
import { Hub } from '../hub.js';
import { CATALOG } from '../ops/index.js';
import type { OpDef } from '../ops/catalog.js';
import { inputJsonSchema } from '../api/mcp/tools.js';
import { VERSION } from '../version.js';
import { registerApprovalCommands } from './approvals.js';
import { registerGuardCommands } from './guard.js';
import { checkHubSecrets, cliLogLevel, hubExists, locateConfig, storeFlag } from './common.js';
import { announceFirstStart, configFrom, runMcp } from './start.js';

import { DATA_DIR_NAME, checkDataDir } from '../os/datadir.js';
import { registerAuditCommands } from './audit.js';
import { registerBackupCommands } from './backup.js';
import { registerKeysCommands } from './keys.js';
import { registerDoctorCommand } from './doctor.js';
import { registerSetupCommand } from './setup/index.js';
import { registerWatchCommand } from './watch.js';
import { registerPrimeCommand } from './prime.js';
import { registerMigrateCommand } from './migrate.js';
import { printable, terminalJson } from './escape.js';

type JsonSchema = { type?: string; properties?: Record<string, JsonSchema>; items?: JsonSchema; description?: string; enum?: unknown[] };

function flagValue(raw: string, schema: JsonSchema | undefined, previous: unknown): unknown {
  switch (schema?.type) {
    case 'integer':
    case 'number':
      return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
    case 'array': {
      const items = raw.split(',').filter((s) => s !== '').map((s) => flagValue(s, schema.items, undefined));
      return [...((previous as unknown[] | undefined) ?? []), ...items];
    }
    case 'object':
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        throw new BatonError('invalid_input', `expected JSON for an object-valued option, got ${JSON.stringify(raw)}`);
      }
    default:
      return raw;
  }
}

const kebab = (s: string): string => s.replace(/_/g, '-');
const camel = (s: string): string => s.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());

/** One CLI command per op, its flags generated from the op's input schema. */
function addOpCommand(group: Command, op: OpDef): void {
  const schema = inputJsonSchema(op) as JsonSchema;
  const props = (op.cli.wrap !== undefined ? schema.properties?.[op.cli.wrap]?.items?.properties : schema.properties) ?? {};
  const cmd = group.command(op.cli.command).description(op.summary);
  if (op.cli.positional !== undefined) cmd.argument(`<${op.cli.positional}>`);
  for (const [field, fs] of Object.entries(props)) {
    if (field === op.cli.positional) continue;
    const help = fs.description ?? (fs.enum !== undefined ? `one of ${fs.enum.join(', ')}` : '');
    if (fs.type === 'boolean') cmd.addOption(new Option(`--${kebab(field)}`, help));
    else {
      const arg = fs.type === 'array' ? '<a,b,…>' : fs.type === 'object' ? '<json>' : '<value>';
      cmd.addOption(
        new Option(`--${kebab(field)} ${arg}`, help).argParser((raw: string, prev: unknown) => flagValue(raw, fs, prev)),
      );
    }
  }
  cmd
    .option('--input <json>', 'the whole input as JSON (flags override its fields)')
    .option('--json', 'print the result as one line of JSON')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--as <name>', 'act as this local agent', 'operator')
    .option('--as-role <role>', 'role of the local agent', 'admin')
    .option('--in-project <name>', 'project of the local agent (default: default)')
    .action(async (...args: unknown[]) => {
      const command = args[args.length - 1] as Command;
      const opts = command.opts<Record<string, unknown>>();
      let input: Record<string, unknown> = {};
      if (typeof opts.input === 'string') {
        try {
          input = JSON.parse(opts.input) as Record<string, unknown>;
        } catch {
          throw new BatonError('invalid_input', '--input is not valid JSON');
        }
      }
      const fields: Record<string, unknown> = {};
      for (const field of Object.keys(props)) {
        const v = opts[camel(field)];
        if (v !== undefined) fields[field] = v;
      }
      if (op.cli.positional !== undefined) fields[op.cli.positional] = args[0];
      if (op.cli.wrap !== undefined) {
        if (Object.keys(fields).length > 0) input[op.cli.wrap] = [fields];
      } else Object.assign(input, fields);

      const config = configFrom({
        data: opts.data as string | undefined,
        config: opts.config as string | undefined,
        logLevel: cliLogLevel(),
      });
      const hub = await Hub.open(config);
      try {
        announceFirstStart(hub, config.dataDir);
        const principal = await hub.localPrincipal(
          String(opts.as),
          String(opts.asRole),
          opts.inProject as string | undefined,
        );
        const meta: CallMeta = { requestId: hub.newRequestId(), transport: 'cli' };
        const out = await hub.call(op.name, input, principal, meta);
        // Results hold agents' text: JSON escapes C0 controls, terminalJson the rest (C1, bidi).
        if (opts.json === true) process.stdout.write(terminalJson(out) + '\n');
        else if (op.name === 'token_create') {
          const r = out as { key: string; token: { id: string; role: string; project: string } };
          process.stdout.write(`${r.key}\n`);
          process.stderr.write(printable(`key ${r.token.id} (role ${r.token.role}, project ${r.token.project}); shown once`) + '\n');
        } else process.stdout.write(terminalJson(out, 2) + '\n');
      } finally {
        await hub.close();
      }
    });
}

/**
 * A last resort, never the design: a rejection nobody handled is logged (with its request id
 * when the error carries one) and the server keeps serving; an uncaught exception leaves the
 * process in an unknown state, so it is logged and the process exits non-zero.
 */
function installLastResort(hub: Hub): void {
  const requestIdOf = (err: unknown): string | undefined => {
    const id = (err as { requestId?: unknown } | null)?.requestId;
    return typeof id === 'string' ? id : undefined;
  };
  process.on('unhandledRejection', (reason: unknown) => {
    hub.log.error({ err: reason, requestId: requestIdOf(reason) }, 'unhandled rejection (kept serving)');
  });
  process.on('uncaughtException', (err: Error) => {
    hub.log.fatal({ err, requestId: requestIdOf(err) }, 'uncaught exception: exiting');
    process.exit(1);
  });
}

/**
 * `command`: the command about to run, when known. `baton mcp` and `baton serve` skip generating
 * the op commands (a JSON Schema per op: ~50 ms of a `baton mcp` cold start, which every agent's
 * client pays at every session start).
 */
export function buildProgram(command?: string): Command {
  const program = new Command('baton')
    .description('Coordination hub for teams of AI coding agents')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description('Run the hub: MCP over Streamable HTTP at /mcp, REST at /api/v1, health at /healthz')
    .option('--host <host>', 'address to bind (default 127.0.0.1)')
    .option('--port <port>', 'port (default 7410)')
    .option('--data <dir>', 'data directory (default .baton)')
    .option('--config <file>', 'JSON config file')
    .option('--store <url>', 'keep the data in PostgreSQL at this postgres:// URL (default BATON_DATABASE_URL; unset: SQLite in the data dir)', storeFlag)
    .option('--no-lean', 'serve every MCP request through the SDK handler')
    .option('--tls-cert <file>', 'PEM certificate file: serve HTTPS (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key file of --tls-cert')
    .option('--allow-insecure-http', 'allow plain HTTP on a non-loopback address (behind a TLS proxy only)')
    .option('--trusted-proxies <list>', 'comma-separated proxy addresses/CIDRs whose X-Forwarded-For and X-Forwarded-Proto are believed')
    .action(
      async (opts: {
        host?: string;
        port?: string;
        data?: string;
        config?: string;
        store?: string;
        lean: boolean;
        tlsCert?: string;
        tlsKey?: string;
        allowInsecureHttp?: boolean;
        trustedProxies?: string;
      }) => {
        const config = configFrom(
          {
            data: opts.data,
            config: opts.config,
            databaseUrl: opts.store,
            host: opts.host,
            port: opts.port,
            tlsCert: opts.tlsCert,
            tlsKey: opts.tlsKey,
            allowInsecureHttp: opts.allowInsecureHttp === true ? true : undefined,
            trustedProxies: opts.trustedProxies,
          },
          'say always',
        );
        const { startHttp } = await import('../api/http/server.js');
        const { checkTransport } = await import('../api/http/guard.js');
        // Refused before the data dir is opened and before anything listens (S19, S20).
        checkTransport(config);
        const hub = await Hub.open(config, { sweeper: true, deferredWorker: true });
        // The first-start key is shown even if binding fails: it is never shown again.
        announceFirstStart(hub, config.dataDir);
        const http = await startHttp(hub, { host: config.host, port: config.port, lean: opts.lean }).catch(async (err: unknown) => {
          await hub.close();
          throw err;
        });
        hub.log.info({ url: http.url, data: config.dataDir }, 'baton listening');
        process.stderr.write(`baton ${VERSION} listening on ${http.url} (MCP: ${http.url}/mcp)\n`);
        installLastResort(hub);
        // A graceful stop (SIGTERM, SIGINT): drain (long polls answer empty, in-flight requests
        // finish within drainTimeoutMs, new ones get 503 shutting_down), flush the deferred
        // audit, close the store, exit 0. A second signal exits at once.
        let stopping = false;
        const stop = (signal: NodeJS.Signals): void => {
          if (stopping) {
            hub.log.warn({ signal }, 'second signal: exiting without draining');
            process.exit(signal === 'SIGINT' ? 130 : 143);
          }
          stopping = true;
          hub.log.info({ signal, drainTimeoutMs: config.drainTimeoutMs }, 'draining');
          void (async () => {
            const drained = await http.drain(config.drainTimeoutMs);
            if (!drained) hub.log.warn('drain timed out: remaining requests were cut off');
            await hub.close();
            hub.log.info('stopped');
            process.exit(0);
          })().catch((err: unknown) => {
            hub.log.error({ err }, 'stop failed');
            process.exit(1);
          });
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      },
    );

  program
    .command('mcp')
    .description('Serve MCP over stdio for one agent (key from BATON_TOKEN; or BATON_AGENT for a keyless local agent)')
    .option('--data <dir>', 'data directory (default .baton)')
    .option('--config <file>', 'JSON config file')
    .option('--store <url>', 'a postgres:// URL (default BATON_DATABASE_URL; unset: SQLite in the data dir)', storeFlag)
    .action(async (opts: { data?: string; config?: string; store?: string }) => {
      await runMcp(opts);
    });

  program
    .command('init')
    .description('Create a data dir (./.baton, or --data / BATON_DATA) with a new database and a server-admin key')
    .option('--data <dir>', 'data directory (default ./.baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .action(async (opts: { data?: string; config?: string }) => {
      const { data, config: file } = opts;
      const loc = locateConfig({ data, config: file }, { logLevel: cliLogLevel() });
      // Like `git init`: here, even if a parent directory has one (that one is then shadowed here).
      const here = loc.source === 'found' ? locateConfig({ data: DATA_DIR_NAME, config: file }, { logLevel: cliLogLevel() }) : loc;
      if (hubExists(here.config)) {
        // Only a hub that serve and mcp would start is "nothing to do": a 0-byte or foreign
        // baton.db, or secrets.json missing or damaged beside it, fails with their message
        // (DataDirError: exit 1) and nothing is changed.
        const { dbExists } = await checkDataDir(here.dataDir);
        checkHubSecrets(here.config, dbExists);
        process.stderr.write(`baton: ${here.dataDir} already holds a Baton hub; nothing to do\n`);
        return;
      }
      if (loc.source === 'found' && loc.dataDir !== here.dataDir) {
        process.stderr.write(`baton: note: ${loc.dataDir} is used from parent directories; commands run under here will use the new one\n`);
      }
      const hub = await Hub.open(here.config);
      try {
        process.stderr.write(`baton: initialised a new data dir in ${here.dataDir}\n`);
        announceFirstStart(hub, here.dataDir);
      } finally {
        await hub.close();
      }
    });

  registerApprovalCommands(program);
  registerGuardCommands(program);
  registerAuditCommands(program);
  registerKeysCommands(program);
  registerDoctorCommand(program);
  registerSetupCommand(program);
  registerWatchCommand(program);
  registerPrimeCommand(program);
  registerMigrateCommand(program);
  registerBackupCommands(program);

  const groups = new Map<string, Command>();
  const opCommands = command !== 'mcp' && command !== 'serve';
  for (const op of opCommands ? CATALOG : []) {
    let group = groups.get(op.cli.group);
    if (group === undefined) {
      group = program.command(op.cli.group).description(`${op.cli.group} commands`);
      groups.set(op.cli.group, group);
    }
    addOpCommand(group, op);
  }
  return program;
}

/** Runs the command line (every command; entry.ts runs a plain `baton mcp` itself). */
export async function runProgram(argv: string[]): Promise<void> {
  const program = buildProgram(argv[2]);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    throw err;
  }
}
