/** Rows read per round of a decrypt-and-filter scan. */
const SCAN_BATCH = 200;

/**
 * Text search over encrypted content (S32): the database cannot match what it holds encrypted,
 * so rows are read newest first in batches (`select(before, n)`: the `n` rows older than the
 * cursor `before`), decrypted and tested by the caller's `match`, until `limit` match or
 * `scanMax` rows were read. `scannedTo`: where the scan stopped short, for the next page.
 */
export async function scanMatching<R, C>(
  select: (before: C | undefined, n: number) => Promise<R[]>,
  cursorOf: (row: R) => C,
  match: (row: R) => boolean,
  opts: { limit: number; scanMax: number; start: C | undefined },
): Promise<{ rows: R[]; scannedTo?: C }> {
  const rows: R[] = [];
  let before = opts.start;
  let scanned = 0;
  while (scanned < opts.scanMax) {
    const want = Math.min(SCAN_BATCH, opts.scanMax - scanned);
    const batch = await select(before, want);
    for (const r of batch) {
      scanned++;
      before = cursorOf(r);
      if (match(r)) {
        rows.push(r);
        if (rows.length >= opts.limit) return { rows };
      }
    }
    if (batch.length < want) return { rows }; // nothing older left
  }
  return before === undefined ? { rows } : { rows, scannedTo: before };
}
