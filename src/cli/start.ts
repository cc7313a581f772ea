import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../config.js';
import { Hub } from '../hub.js';
import { announceDataDir, locateConfig, requireDataDir, tokenFromEnv } from './common.js';

// What starting a hub from the command line takes, shared by every command (main.ts) and the
// plain `baton mcp` that entry.ts runs without building the command line.

export interface GlobalFlags {
  data?: string;
  config?: string;
}

/**
 * The config of a command, its data dir resolved like git's (see common.ts `locateConfig`).
 * `create`: `serve`, `mcp` and `init` may create a data dir (and say where); every other command
 * needs an existing one and fails naming the paths it tried.
 */
export function configFrom(flags: GlobalFlags & Partial<Record<'host' | 'port' | 'logLevel' | 'tlsCert' | 'tlsKey' | 'allowInsecureHttp' | 'trustedProxies' | 'databaseUrl', unknown>>, create?: 'say always' | 'say when new'): Config {
  const { data, config, ...extra } = flags;
  const loc = locateConfig({ data, config }, extra);
  if (create === undefined) return requireDataDir(loc).config;
  announceDataDir(loc, create === 'say always');
  return loc.config;
}

/** Where a first start off a terminal leaves the server-admin key (in the data dir, mode 0600). */
export const ADMIN_KEY_FILE = 'admin-key.txt';

/**
 * The first-start server-admin key is shown once. stderr is also the log stream (captured by
 * service managers, CI and log shippers), so the key goes there only when a person is watching
 * it (a TTY). Otherwise it is written to a file only the hub's user can read, created exclusively
 * (never through a planted symlink or into an existing file), and stderr says only where it is.
 */
export function announceFirstStart(hub: Hub, dataDir: string): void {
  const key = hub.firstStartKey;
  if (key === null) return;
  if (process.stderr.isTTY) {
    process.stderr.write(
      `\nBaton created a new data dir with a server-admin key. It is shown only this once; store it now:\n\n` +
        `  ${key}\n\n`,
    );
    return;
  }
  const file = join(resolve(dataDir), ADMIN_KEY_FILE);
  try {
    writeFileSync(file, `${key}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    // Never print the key off a terminal; without the file it is lost: say how to get another.
    const why = (err as NodeJS.ErrnoException).code ?? 'error';
    process.stderr.write(
      `baton: created a new data dir with a server-admin key, but could not write it to ${file} (${why}); ` +
        `issue another with \`baton token create --role admin --name NAME\` on this machine\n`,
    );
    return;
  }
  process.stderr.write(
    `baton: created a new data dir; its server-admin key is in ${file} (mode 0600, shown nowhere else). ` +
      `Store it elsewhere, then delete the file.\n`,
  );
}

/** `baton mcp`: MCP over stdio for one agent, until stdin ends or a signal (src/api/mcp/stdio.ts). */
export async function runMcp(opts: { data?: string; config?: string; store?: string }): Promise<void> {
  const config = configFrom({ data: opts.data, config: opts.config, databaseUrl: opts.store }, 'say when new');
  const { runStdio } = await import('../api/mcp/stdio.js');
  const hub = await Hub.open(config, { sweeper: true });
  announceFirstStart(hub, config.dataDir);
  try {
    await runStdio(hub, {
      token: tokenFromEnv(),
      agent: process.env.BATON_AGENT,
      role: process.env.BATON_ROLE,
      tools: process.env.BATON_TOOLS,
    });
  } finally {
    await hub.close();
  }
}
