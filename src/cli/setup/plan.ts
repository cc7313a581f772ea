import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { BatonError } from '../../core/errors.js';

/**
 * What `baton setup` changes, computed in full before anything is written: `--dry-run` prints
 * the plan, a real run writes it. Each file is written whole through a temporary file and a
 * rename, so an interrupted run leaves the old or the new file, never half of one.
 */
export interface FileChange {
  /** Absolute path. */
  readonly path: string;
  /** The file's content now; null when it does not exist. */
  readonly before: string | null;
  readonly after: string;
  /** Mode for a new or rewritten file (secrets: 0600). */
  readonly mode?: number;
  /** Print no content of this file (it holds a key). */
  readonly secret?: boolean;
}

/** How a client's MCP server is launched: a local command (stdio) or a URL (Streamable HTTP). */
export type Launch =
  | { readonly kind: 'stdio'; readonly command: string; readonly args: readonly string[]; readonly env: Readonly<Record<string, string>> }
  | { readonly kind: 'http'; readonly url: string; readonly tokenEnv: string };

/** Everything a client module needs to write its config. */
export interface SetupContext {
  /** The project's directory (the git work tree's top, or the working directory). */
  readonly projectDir: string;
  readonly dataDir: string;
  readonly agent: string;
  /** The private file holding the agent's key (`.baton/agents/<agent>.env`). */
  readonly tokenFile: string;
  /** The MCP server's name in the client's config. */
  readonly serverName: string;
  readonly launch: Launch;
  /** The shell command a hook runs to print `baton prime` for this agent. */
  readonly primeCommand: string;
  readonly env: NodeJS.ProcessEnv;
  /** Where a client with both kinds keeps its config: the project's files, or the user's (Codex). */
  readonly scope: 'project' | 'user';
}

/** What `--check` found wrong with one client's setup. */
export interface Drift {
  readonly client: string;
  readonly file: string;
  readonly problem: string;
}

export function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BatonError('invalid_input', `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** A JSON object file, or {} when absent; anything else is refused (never clobbered). */
export function readJsonObject(path: string): { text: string | null; value: Record<string, unknown> } {
  const text = readText(path);
  if (text === null || text.trim() === '') return { text, value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BatonError('invalid_input', `${path} is not valid JSON; fix or move it, then run \`baton setup\` again (nothing was changed)`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BatonError('invalid_input', `${path} does not hold a JSON object; fix or move it (nothing was changed)`);
  }
  return { text, value: value as Record<string, unknown> };
}

/** An object-valued member of `obj` (created when absent); refuses a member of another type. */
export function objectAt(obj: Record<string, unknown>, key: string, file: string): Record<string, unknown> {
  const v = obj[key];
  if (v === undefined) {
    const fresh: Record<string, unknown> = {};
    obj[key] = fresh;
    return fresh;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new BatonError('invalid_input', `${file}: "${key}" is not a JSON object; fix it (nothing was changed)`);
  }
  return v as Record<string, unknown>;
}

export const jsonText = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

/** A JSON file change that keeps the file byte-identical when the value did not change. */
export function jsonChange(path: string, text: string | null, before: Record<string, unknown>, after: Record<string, unknown>): FileChange {
  const same = text !== null && JSON.stringify(before) === JSON.stringify(after);
  return { path, before: text, after: same ? text : jsonText(after) };
}

export const changed = (c: FileChange): boolean => c.before !== c.after;

/** Writes every changed file (directories created 0700 for secrets, else default). */
export function apply(changes: readonly FileChange[]): void {
  for (const c of changes) {
    if (!changed(c)) continue;
    const dir = dirname(c.path);
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: c.secret === true ? 0o700 : 0o755 });
      // The hub sets a 077 umask for its data dir; a project directory (.claude, .codex) keeps the usual mode.
      if (c.secret !== true) chmodSync(dir, 0o755);
    }
    const tmp = `${c.path}.baton-${process.pid}.tmp`;
    // An edited project file keeps its mode; a new one is 0644 (chmod: the 077 umask would make it 0600).
    const mode = c.mode ?? (c.before !== null ? statSync(c.path).mode & 0o777 : 0o644);
    writeFileSync(tmp, c.after, { mode, flag: 'w' });
    chmodSync(tmp, mode);
    renameSync(tmp, c.path);
  }
}

/** The plan as `--dry-run` prints it: one line per file, then the lines that change (never a key). */
export function describe(changes: readonly FileChange[], base: string): string {
  const out: string[] = [];
  for (const c of changes) {
    const name = relative(base, c.path).startsWith('..') ? c.path : relative(base, c.path);
    if (!changed(c)) {
      out.push(`= ${name} (unchanged)`);
      continue;
    }
    out.push(`${c.before === null ? '+' : '~'} ${name} (${c.before === null ? 'create' : 'update'}${c.mode !== undefined ? `, mode ${c.mode.toString(8)}` : ''})`);
    if (c.secret === true) {
      out.push('    (holds the agent key: not shown)');
      continue;
    }
    const old = new Set((c.before ?? '').split('\n'));
    const now = new Set(c.after.split('\n'));
    for (const l of (c.before ?? '').split('\n')) if (l !== '' && !now.has(l)) out.push(`    - ${l}`);
    for (const l of c.after.split('\n')) if (l !== '' && !old.has(l)) out.push(`    + ${l}`);
  }
  return out.join('\n') + '\n';
}
