import type { Readable, Writable } from 'node:stream';
import type { Principal } from '../../auth/principal.js';
import { looksLikeKey } from '../../auth/keys.js';
import { isBatonError } from '../../core/errors.js';
import { settlesWithin } from '../../core/time.js';
import type { Hub } from '../../hub.js';
import { isTier, tierError, type Tier } from '../../core/tiers.js';
import type { Caller } from './server.js';
import type { SdkStdio, SdkStdioOptions, serveSdkStdio } from './stdio-sdk.js';
import { FastStdio } from './stdio-fast.js';
import { listTools } from './tools.js';

/**
 * MCP over stdio, one agent per process. With `BATON_TOKEN` the key is checked on every call
 * (revocation applies at once); without one, the process runs as a named local agent (S7), in
 * development mode only.
 *
 * A process that cannot authenticate still answers the handshake, then refuses every request
 * with a message that names the problem and the fix (and says it once on stderr). Exiting before
 * `initialize` left Claude Code, Codex and the AI SDK showing only "connection closed".
 *
 * When stdin ends, or on SIGTERM/SIGINT, the process drains: waits end early, the calls still
 * running finish (bounded by DRAIN_MS), and only then does the caller close the hub
 * (deferred audit flushed, store closed). Exit status 0, or 1 when it could not authenticate or
 * read its store (which it says, after answering the handshake, instead of dying before it).
 * stdin ending is the client leaving: the signal of every call that waits fires first (`gone`),
 * so its wait ends without effect (nothing claimed or marked read for a client that cannot be
 * answered). A signal is a launcher stopping a client that is still there: the runner's drain
 * answers its long polls with their empty result.
 *
 * The plain handshake (initialize, initialized, tools/list) is answered without loading the MCP
 * SDK (stdio-fast.ts); the SDK (stdio-sdk.ts) is loaded for everything else and then serves the
 * session.
 */
const DRAIN_MS = 10_000;
const CREATE_KEY = 'create one with `baton token create --name NAME --role worker` and set BATON_TOKEN to the key it prints';

/** Why this process cannot authenticate, with the fix; null when it can. */
async function refusalOf(hub: Hub, opts: { token?: string; agent?: string }): Promise<string | null> {
  if (opts.token !== undefined && opts.token !== '') {
    if (!looksLikeKey(opts.token.trim())) {
      return `BATON_TOKEN is not a Baton key (a key is "bat_" and 43 more characters): ${CREATE_KEY}`;
    }
    try {
      await hub.authenticate(opts.token);
      return null;
    } catch (err) {
      if (isBatonError(err) && (err.code === 'unauthenticated' || err.code === 'rate_limited')) {
        return `BATON_TOKEN is not a valid Baton key (revoked, expired, bound to other addresses, or mistyped): ${CREATE_KEY}`;
      }
      return storeRefusal(err);
    }
  }
  // Production mode never runs without authentication (S36): the keyless local agent is a
  // development convenience.
  if (hub.config.env === 'production') return `production mode requires BATON_TOKEN (no keyless local agent): ${CREATE_KEY}`;
  if (opts.agent === undefined || opts.agent === '') {
    return `no credentials: set BATON_TOKEN to a Baton key (${CREATE_KEY.replace(' and set BATON_TOKEN to the key it prints', '')}), or BATON_AGENT=NAME to run as a named local agent (development only)`;
  }
  return null;
}

/** The store could not be read at start (damaged, full, read-only, busy): said, not a crash before the handshake. */
function storeRefusal(err: unknown): string {
  const code = isBatonError(err) ? err.code : 'internal';
  return `the hub's store could not be read (${code}): run \`baton doctor\` on this data dir, then restart this server`;
}

export interface StdioOptions {
  token?: string;
  agent?: string;
  role?: string;
  tools?: string;
  /** The streams served (tests); default the process's stdin and stdout. */
  stdin?: Readable;
  stdout?: Writable;
  /** false: the SDK answers the handshake too (tests compare both paths). */
  fast?: boolean;
  /** Told when the SDK takes the session over from the fast handshake (tests). */
  onTakeOver?: () => void;
}

export async function runStdio(hub: Hub, opts: StdioOptions): Promise<void> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  // BATON_TOOLS: this connection's tool tier (core, standard, all); unset: the key's, else the server default.
  let tools: Tier | undefined;
  let refusal: string | null = null;
  if (opts.tools !== undefined && opts.tools !== '') {
    if (isTier(opts.tools)) tools = opts.tools;
    else refusal = tierError('BATON_TOOLS', opts.tools);
  }
  refusal ??= await refusalOf(hub, opts);
  let local: Principal | null = null;
  if (refusal === null && (opts.token === undefined || opts.token === '')) {
    try {
      local = await hub.localPrincipal(opts.agent!, opts.role ?? 'worker');
    } catch (err) {
      refusal = isBatonError(err) && err.code === 'invalid_input' ? `BATON_ROLE: ${err.message}` : storeRefusal(err);
    }
  }
  const inFlight = new Set<Promise<unknown>>();
  // Fires when stdin ends: the client has left (every call's signal follows it).
  const left = new AbortController();
  const keyed = opts.token !== undefined && opts.token !== '';
  let handle: SdkStdio | FastStdio;
  const sdk = async (): Promise<{ serveSdkStdio: typeof serveSdkStdio }> => import('./stdio-sdk.js');
  if (refusal !== null) {
    process.stderr.write(`baton mcp: ${refusal}\n`);
    handle = (await sdk()).serveSdkStdio(hub, { refusal, caller: null, keyed, inFlight, gone: left.signal, stdin, stdout });
  } else {
    // A tools/list that failed on the fast path: the SDK answers it with this same outcome.
    let failed: Promise<Principal> | null = null;
    let last: Promise<Principal> | null = null;
    let principal: () => Promise<Principal>;
    let caller: Caller;
    if (keyed) {
      const token = opts.token!;
      const resolve = hub.resolver(token);
      principal = () => (last = hub.authenticate(token));
      caller = {
        principal: () => {
          const f = failed;
          failed = null;
          return f ?? principal();
        },
        who: () => resolve,
        tools,
      };
    } else {
      const p = local!;
      principal = async () => p;
      caller = { principal, who: () => p, tools };
    }
    const serve = (more: Partial<SdkStdioOptions>): Promise<SdkStdio> =>
      sdk().then((m) => m.serveSdkStdio(hub, { refusal: null, caller, keyed, inFlight, gone: left.signal, stdin, stdout, ...more }));
    if (opts.fast === false) {
      handle = await serve({});
    } else {
      const fast = new FastStdio({
        stdin,
        stdout,
        listTools: async () => {
          const p = await principal();
          return { tools: listTools(hub, p, await hub.toolTier(p, tools)) };
        },
        takeOver: (input, answered, listFailed) => {
          opts.onTakeOver?.();
          if (listFailed) failed = last;
          const started = serve({
            takeover: {
              input,
              answered,
              onMismatch: (id) => process.stderr.write(`baton mcp: internal: the fast handshake's answer to request ${JSON.stringify(id)} differs from the SDK's\n`),
            },
          });
          return { close: async () => (await started).close() };
        },
      });
      fast.start();
      handle = fast;
    }
  }
  // stdin ending is the client leaving; SIGTERM/SIGINT is a launcher stopping us: both drain.
  await new Promise<void>((resolve) => {
    const done = (): void => {
      // Signals are ours only until the drain begins: a second one then stops the process as usual.
      process.off('SIGTERM', done);
      process.off('SIGINT', done);
      resolve();
    };
    const gone = (): void => {
      left.abort(); // before the drain's final attempts: a departed client's waits claim nothing
      done();
    };
    stdin.once('end', gone);
    stdin.once('close', gone);
    process.once('SIGTERM', done);
    process.once('SIGINT', done);
  });
  hub.runner.drain(); // long polls answer their empty result now
  await drain(inFlight);
  await handle.close();
  // It never served: a launcher that looks at the exit status sees the failure too.
  if (refusal !== null) process.exitCode = 1;
}

/** Waits for the calls still running (their waits were aborted with the transport), at most DRAIN_MS. */
async function drain(inFlight: Set<Promise<unknown>>): Promise<void> {
  if (inFlight.size > 0) await settlesWithin(Promise.allSettled([...inFlight]), DRAIN_MS);
}
