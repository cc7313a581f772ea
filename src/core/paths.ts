import { posix } from 'node:path';

/**
 * Project-relative paths (S16): forward slashes, no leading slash or drive, no `..` escaping the
 * project, no NUL or control characters. Returns the normalised path or null when refused.
 */
export function normalizeProjectPath(input: string): string | null {
  if (input.length === 0 || input.length > 1024) return null;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(input)) return null;
  const slashed = input.replace(/\\/g, '/');
  const rooted = (p: string): boolean => p.startsWith('/') || /^[a-zA-Z]:/.test(p) || p.startsWith('~');
  if (rooted(slashed)) return null;
  const norm = posix.normalize(slashed).replace(/\/+$/, '');
  // Checked again after normalising: `a/../C:/x` and `./~/x` must not turn into rooted paths.
  if (norm === '..' || norm.startsWith('../') || norm === '.' || norm === '' || rooted(norm)) return null;
  return norm;
}
