import { chmodSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * S31: the data dir and the files holding data or secrets are private to the server's user:
 * the dir 0700, the files 0600. Checked at every start: in development a looser mode is fixed
 * (with a warning); in production the hub refuses to start and says which path and mode.
 */
export const PRIVATE_FILES = ['baton.db', 'baton.db-wal', 'baton.db-shm', 'secrets.json', 'keyring.json'] as const;

export interface ModeReport {
  path: string;
  kind: 'dir' | 'file';
  /** Octal, e.g. "700". */
  mode: string;
  want: string;
  ok: boolean;
}

/** The modes of the data dir and of its private files that exist (nothing is changed). */
export function inspectModes(dataDir: string): ModeReport[] {
  if (!existsSync(dataDir)) return [];
  const out: ModeReport[] = [];
  const add = (path: string, kind: 'dir' | 'file'): void => {
    const mode = statSync(path).mode & 0o777;
    out.push({ path, kind, mode: mode.toString(8), want: kind === 'dir' ? '700' : '600', ok: (mode & 0o077) === 0 });
  };
  add(dataDir, 'dir');
  for (const f of PRIVATE_FILES) {
    const p = join(dataDir, f);
    // Only a regular file is one of ours to fix: a directory (or other thing) at that name is
    // refused by whoever reads it (secrets.ts, the store) and left as it was found.
    if (existsSync(p) && statSync(p).isFile()) add(p, 'file');
  }
  return out;
}

export interface ModeOutcome {
  /** Paths whose mode was fixed (development). */
  fixed: ModeReport[];
  /** Paths left open (production: the start is refused). */
  refused: ModeReport[];
}

/** Development: fixes loose modes (dir 0700, files 0600). Production: changes nothing, reports them. */
export function enforceModes(dataDir: string, production: boolean): ModeOutcome {
  const loose = inspectModes(dataDir).filter((r) => !r.ok);
  if (production) return { fixed: [], refused: loose };
  for (const r of loose) chmodSync(r.path, r.kind === 'dir' ? 0o700 : 0o600);
  return { fixed: loose, refused: [] };
}

export function describeMode(r: ModeReport): string {
  return `${r.path} is mode ${r.mode} (readable or writable by group/others; want ${r.want})`;
}
