import { z } from 'zod';

/**
 * Building blocks for setting schemas. Numbers from env or flags arrive as strings: only a plain
 * decimal integer is converted (no spaces around it, no leading zero that could be read as
 * octal); a blank, `null`, `true`, ` 1000` or `01000` stays what it is and fails as "expected
 * number" instead of becoming 0, 1 or a guess.
 */
export const int = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === 'string' && /^-?(0|[1-9]\d*)$/.test(v) ? Number(v) : v),
    z.number().int().min(min).max(max),
  );

export const ms = (min: number, max: number) => int(min, max);

/** A list: an array in the config file, or comma-separated in env and flags. */
export const list = <T extends z.ZodType>(item: T, max: number) =>
  z.preprocess(
    (v) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((x) => x.trim())
            .filter((x) => x !== '')
        : v,
    z.array(item).max(max),
  );

/** A boolean: true/false in the file; "true"/"false"/"1"/"0" in env and flags. */
export const bool = () =>
  z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean());
