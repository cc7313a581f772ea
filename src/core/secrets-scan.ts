/**
 * S34 "checkpoints carry no secrets": a cheap detector for credentials pasted into text an agent
 * asks Baton to keep (checkpoint and handoff summaries, completed items, metric keys, commit
 * messages). It names the kind of secret found, never the secret itself. It is a net for the
 * common, unmistakable formats, not a proof of absence.
 */
const PATTERNS: readonly (readonly [string, RegExp])[] = [
  ['baton api key', /bat_[A-Za-z0-9_-]{43}/],
  ['aws access key id', /AKIA[0-9A-Z]{16}/],
  ['private key', /-----BEGIN [A-Z ]*PRIVATE KEY-----/],
  ['github token', /gh[pousr]_[A-Za-z0-9]{36}/],
  ['github token', /github_pat_[A-Za-z0-9_]{40,}/],
  ['api secret key', /\bsk-[A-Za-z0-9_-]{20,}/],
  ['slack token', /xox[abprs]-[A-Za-z0-9-]{10,}/],
];

/** The kind of the first secret found in the text, or null. */
export function findSecret(text: string): string | null {
  for (const [kind, re] of PATTERNS) if (re.test(text)) return kind;
  return null;
}

/** The first field (by name) whose text holds a secret, with the kind found; null when clean. */
export function scanFields(fields: Readonly<Record<string, string | readonly string[] | undefined>>): {
  field: string;
  kind: string;
} | null {
  for (const [field, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const texts = typeof value === 'string' ? [value] : value;
    for (const [i, text] of texts.entries()) {
      const kind = findSecret(text);
      if (kind !== null) return { field: typeof value === 'string' ? field : `${field}.${i}`, kind };
    }
  }
  return null;
}
