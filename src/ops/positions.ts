import { z } from 'zod';
import { decodePosition, encodePosition, encodePositions, type Seal } from '../core/cursor.js';
import type { OpContext } from './catalog.js';
import { lazy } from './schemas.js';

/**
 * Positions in the hub's global sequences (event row ids, message seqs) as agents see them: sealed
 * to the caller's project (`encodePosition`), so an id or cursor never shows how much the other
 * projects wrote, and one from another project is refused (S9). `start` names the beginning.
 */
export type Sequence = 'events' | 'messages';

export const START = 'start';

export const positionInput = lazy(() => z
  .string()
  .regex(/^(start|[A-Za-z0-9_-]{22})$/, "expected 'start' or a cursor from an earlier answer"));

export function sealOf(ctx: OpContext): Seal {
  return { secret: ctx.services.keyPepper, scope: ctx.principal.projectId };
}

export function sealPosition(ctx: OpContext, seq: Sequence, n: number): string {
  return encodePosition(seq, n, sealOf(ctx));
}

export function sealPositions(ctx: OpContext, seq: Sequence, ns: readonly number[]): string[] {
  return encodePositions(seq, ns, sealOf(ctx));
}

/** The position a cursor names; `start` is 0 (before every row). */
export function openPosition(ctx: OpContext, seq: Sequence, cursor: string): number {
  return cursor === START ? 0 : decodePosition(seq, cursor, sealOf(ctx));
}
