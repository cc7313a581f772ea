import { BatonError } from '../../core/errors.js';

/**
 * A minimal, careful TOML editor for one thing: replacing the `[mcp_servers.<name>]` table (and
 * its sub-tables, e.g. `[mcp_servers.<name>.env]`) of a Codex config, leaving every other byte
 * of the file as it was (comments, order, other servers). It does not parse TOML in general: it
 * finds table headers line by line, skipping multi-line strings, and refuses (changes nothing)
 * where the server is defined in a way it does not edit (dotted keys, inline tables).
 */

export type TomlValue = string | readonly string[] | Readonly<Record<string, string>>;

/** TOML basic strings accept JSON's escapes (\" \\ \n \t \uXXXX …), so JSON.stringify writes one. */
const str = (s: string): string => JSON.stringify(s);
const bareKey = /^[A-Za-z0-9_-]+$/;
const key = (k: string): string => (bareKey.test(k) ? k : str(k));

/** The text of `[mcp_servers.<name>]` with `fields` (scalars and arrays) and sub-tables (records). */
export function serverTable(name: string, fields: Record<string, TomlValue>): string {
  const head = `mcp_servers.${key(name)}`;
  const lines = [`[${head}]`];
  const subs: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'string') lines.push(`${key(k)} = ${str(v)}`);
    else if (Array.isArray(v)) lines.push(`${key(k)} = [${(v as readonly string[]).map(str).join(', ')}]`);
    else {
      subs.push('', `[${head}.${key(k)}]`);
      for (const [ek, ev] of Object.entries(v as Record<string, string>)) subs.push(`${key(ek)} = ${str(ev)}`);
    }
  }
  return [...lines, ...subs].join('\n') + '\n';
}

interface Header {
  line: number;
  /** The header's key path, normalised (quotes removed), e.g. ['mcp_servers', 'baton', 'env']. */
  path: string[];
}

function parsePath(raw: string): string[] | null {
  const out: string[] = [];
  let rest = raw.trim();
  while (rest !== '') {
    let m = /^"((?:[^"\\]|\\.)*)"\s*/.exec(rest);
    if (m !== null) out.push(JSON.parse(`"${m[1]!}"`) as string);
    else if ((m = /^'([^']*)'\s*/.exec(rest)) !== null) out.push(m[1]!);
    else if ((m = /^([A-Za-z0-9_-]+)\s*/.exec(rest)) !== null) out.push(m[1]!);
    else return null;
    rest = rest.slice(m[0].length);
    if (rest.startsWith('.')) rest = rest.slice(1).trimStart();
    else if (rest !== '') return null;
  }
  return out;
}

/** Table headers, skipping lines inside multi-line strings. */
function headers(lines: readonly string[]): Header[] {
  const out: Header[] = [];
  let inMulti: '"""' | "'''" | null = null;
  lines.forEach((line, i) => {
    if (inMulti !== null) {
      if (line.includes(inMulti)) inMulti = null;
      return;
    }
    for (const q of ['"""', "'''"] as const) {
      const at = line.indexOf(q);
      if (at >= 0 && line.indexOf(q, at + 3) < 0 && !line.trimStart().startsWith('#')) inMulti = q;
    }
    const m = /^\s*\[(?!\[)([^\]]*)\]\s*(#.*)?$/.exec(line);
    if (m !== null) {
      const path = parsePath(m[1]!);
      if (path !== null) out.push({ line: i, path });
    } else if (/^\s*\[\[/.test(line)) out.push({ line: i, path: ['[['] });
  });
  return out;
}

const isOurs = (path: readonly string[], name: string): boolean => path[0] === 'mcp_servers' && path[1] === name;

/**
 * `text` with the server `name`'s tables replaced by `table` (appended when absent). Refuses
 * when the server is also defined by dotted keys or an inline table, which this editor does not
 * rewrite.
 */
export function replaceServer(text: string, name: string, table: string, file: string): string {
  const lines = text.split('\n');
  const hs = headers(lines);
  // Dotted keys (`mcp_servers.baton.command = …` at the root, `baton.command = …` or
  // `baton = {…}` under [mcp_servers]) would make a second definition: refuse instead.
  const sectionOf = (i: number): string[] => {
    let cur: string[] = [];
    for (const h of hs) if (h.line < i) cur = h.path;
    return cur;
  };
  const quotedName = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  lines.forEach((line, i) => {
    const section = sectionOf(i).join('.');
    const direct = new RegExp(`^\\s*(mcp_servers\\s*\\.\\s*)?["']?${quotedName}["']?\\s*[.=]`);
    if ((section === '' && /^\s*mcp_servers\s*[.=]/.test(line) && direct.test(line)) || (section === 'mcp_servers' && direct.test(line))) {
      throw new BatonError('invalid_input', `${file} defines mcp_servers.${name} with dotted keys or an inline table (line ${i + 1}); move it into a [mcp_servers.${name}] table or remove it, then run again (nothing was changed)`);
    }
  });
  const start = hs.findIndex((h) => isOurs(h.path, name));
  if (start < 0) {
    const body = text.replace(/\n*$/, '');
    return body === '' ? table : `${body}\n\n${table}`;
  }
  // Our tables run from the first header of ours to the next header that is not ours; a second,
  // separate run of ours (hand-edited) is refused rather than guessed at.
  let end = start;
  while (end + 1 < hs.length && isOurs(hs[end + 1]!.path, name)) end++;
  if (hs.slice(end + 1).some((h) => isOurs(h.path, name))) {
    throw new BatonError('invalid_input', `${file} defines [mcp_servers.${name}] in two places; merge them by hand, then run again (nothing was changed)`);
  }
  const from = hs[start]!.line;
  let to = end + 1 < hs.length ? hs[end + 1]!.line : lines.length;
  // Keep blank lines and comments that precede the next table with that table.
  while (to > from + 1 && (lines[to - 1]!.trim() === '' || lines[to - 1]!.trimStart().startsWith('#'))) to--;
  const next = lines.slice(to);
  while (next.length > 0 && next[0]!.trim() === '') next.shift();
  const before = lines.slice(0, from);
  // One blank line between our table and what follows.
  const rest = next.some((l) => l.trim() !== '') ? `\n${next.join('\n')}` : '';
  return `${before.join('\n')}${before.length > 0 ? '\n' : ''}${table}${rest}`.replace(/\n*$/, '\n');
}

/** The simple values (strings, string arrays) of our tables, for `--check`; null when absent. */
export function readServer(text: string, name: string): Record<string, TomlValue> | null {
  const lines = text.split('\n');
  const hs = headers(lines);
  const out: Record<string, TomlValue> = {};
  let found = false;
  hs.forEach((h, i) => {
    if (!isOurs(h.path, name)) return;
    found = true;
    const sub = h.path.slice(2).join('.');
    const end = i + 1 < hs.length ? hs[i + 1]!.line : lines.length;
    const rec: Record<string, string> = {};
    for (const line of lines.slice(h.line + 1, end)) {
      const m = /^\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+)\s*=\s*(.+?)\s*$/.exec(line);
      if (m === null) continue;
      const k = m[1]!.startsWith('"') ? (JSON.parse(m[1]!) as string) : m[1]!;
      let v: unknown;
      try {
        v = JSON.parse(m[2]!);
      } catch {
        continue; // not a value this reader needs (a literal string, a number, an inline table)
      }
      if (sub === '') {
        if (typeof v === 'string') out[k] = v;
        else if (Array.isArray(v) && v.every((x) => typeof x === 'string')) out[k] = v as string[];
      } else if (typeof v === 'string') rec[k] = v;
    }
    if (sub !== '') out[sub] = rec;
  });
  return found ? out : null;
}

/** Whether the table `[a."b"…]` with exactly this key path exists and sets `key = "value"` (simple string values only). */
export function tableHas(text: string, path: readonly string[], key: string, value: string): boolean {
  const lines = text.split('\n');
  const hs = headers(lines);
  return hs.some((h, i) => {
    if (h.path.length !== path.length || h.path.some((p, j) => p !== path[j])) return false;
    const end = i + 1 < hs.length ? hs[i + 1]!.line : lines.length;
    return lines.slice(h.line + 1, end).some((l) => {
      const m = /^\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+)\s*=\s*(".*")\s*(#.*)?$/.exec(l);
      if (m === null) return false;
      try {
        return (m[1]!.startsWith('"') ? JSON.parse(m[1]!) : m[1]) === key && JSON.parse(m[2]!) === value;
      } catch {
        return false;
      }
    });
  });
}
