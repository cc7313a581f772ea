import type { FileChange, Launch, SetupContext } from './plan.js';

/** A server entry as found in a client's config, in the common shape `--check` examines. */
export interface FoundEntry {
  readonly command?: string;
  readonly args?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly url?: string;
}

/** What `--check` reads back from a client's files. */
export interface Inspection {
  /** The config file the server entry lives in. */
  readonly file: string;
  /** null: no entry for the server (the client is not set up here). */
  readonly entry: FoundEntry | null;
  /** Client-specific problems (a missing hook, an untrusted server). */
  readonly problems: readonly string[];
  /** What the user still has to do that is not drift (e.g. trust the folder in the client once). */
  readonly notes?: readonly string[];
}

/** One supported client: where its config lives and how a Baton server is written there. */
export interface ClientModule {
  readonly name: string;
  /** One line for `baton setup --help`. */
  readonly about: string;
  plan(ctx: SetupContext): FileChange[];
  inspect(where: { projectDir: string; serverName: string; env: NodeJS.ProcessEnv; primeCommand: string | null }): Inspection;
}

/** The `{command, args, env}` / `{url, headers}` entry most clients share (`.mcp.json`'s shape). */
export function mcpJsonEntry(launch: Launch, header: (tokenEnv: string) => string, urlKey = 'url'): Record<string, unknown> {
  if (launch.kind === 'stdio') return { command: launch.command, args: [...launch.args], env: { ...launch.env } };
  return { [urlKey]: launch.url, headers: { Authorization: `Bearer ${header(launch.tokenEnv)}` } };
}

/** The common entry back from a JSON config's `mcpServers[name]`. */
export function foundOf(v: unknown): FoundEntry | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const strings = (x: unknown): string[] | undefined => (Array.isArray(x) && x.every((s) => typeof s === 'string') ? (x as string[]) : undefined);
  const record = (x: unknown): Record<string, string> | undefined =>
    x !== null && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'))
      : undefined;
  const url = typeof o.url === 'string' ? o.url : typeof o.httpUrl === 'string' ? o.httpUrl : undefined;
  return {
    ...(typeof o.command === 'string' ? { command: o.command } : {}),
    ...(strings(o.args) !== undefined ? { args: strings(o.args)! } : {}),
    ...(record(o.env) !== undefined ? { env: record(o.env)! } : {}),
    ...(url !== undefined ? { url } : {}),
  };
}
