import type { z } from 'zod';
import type { Principal } from '../auth/principal.js';
import type { Audience } from '../core/audience.js';
import type { Clock } from '../core/clock.js';
import type { Permission, Roles } from '../core/roles.js';
import type { Tier } from '../core/tiers.js';
import type { Executor } from '../store/db.js';
import type { Config } from '../config.js';
import type { Cipher } from '../security/crypto.js';

/**
 * Returned by a waiting op's handler when there is nothing yet: the runner waits and retries.
 * On the final attempt (`ctx.final`) a handler should answer instead; if it still returns RETRY,
 * the runner answers the op's output shape with every top-level field null.
 */
export const RETRY: unique symbol = Symbol('retry');

export interface OpServices {
  readonly config: Config;
  readonly clock: Clock;
  readonly roles: Roles;
  readonly keyPepper: Buffer;
  /** Keys the audit hash chain (derived from the server secret). */
  readonly auditKey: Buffer;
  readonly cipher?: Cipher; // encryption at rest (S32); absent: no key configured
}

export interface OpContext {
  readonly principal: Principal;
  readonly tx: Executor;
  readonly now: number;
  readonly requestId: string;
  readonly services: OpServices;
  /**
   * True on the last attempt of a waiting op (its wait is over, or it asked for none): the
   * handler should answer with what it has instead of RETRY.
   */
  readonly final: boolean;
  /**
   * Appends an event row in this transaction; the doorbell rings after commit. The audience says
   * who may read it (default: the whole project); every read path of events filters by it.
   */
  emit(type: string, subject: string | null, data?: Record<string, unknown>, audience?: Audience): Promise<void>;
  /**
   * As `emit`, but the event takes its place in the transaction's events now, not when the
   * handler returns: for work whose effects other ops of the batch may act on before this op
   * ends (a claim's lease sweep, awaited by the batch's other claims: its `task.lease_expired`
   * must come before another claim's `task.claimed` of the same task).
   */
  emitNow(type: string, subject: string | null, data?: Record<string, unknown>): Promise<void>;
  /** Sets the audit target (the id the op acted on). */
  target(id: string): void;
  /**
   * Work this attempt started outside any transaction (e.g. git): when the handler then answers
   * RETRY, the runner pauses until that work settles (not merely until the doorbell, a re-check
   * or the deadline) and runs another attempt, even past the wait's deadline or during a drain.
   * The work must bound its own duration.
   */
  outside(work: Promise<unknown>): void;
}

export interface RestRoute {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Under /api/v1; `:name` segments fill input fields of the same name. */
  readonly path: string;
}

export interface CliSpec {
  /** `baton <group> <command>`. */
  readonly group: string;
  readonly command: string;
  /** Flags fill one element of this array field (e.g. `task add` fills `tasks[0]`). */
  readonly wrap?: string;
  /** Positional argument filling this field (e.g. `baton task get ID`). */
  readonly positional?: string;
}

export interface OpDef<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  readonly name: string;
  readonly summary: string;
  readonly input: I;
  readonly output: O;
  readonly permission: Permission;
  /** `write` ops run in a writing transaction and are audited in it; `read` ops never write. */
  readonly kind: 'read' | 'write';
  /**
   * The smallest tool tier whose tools/list shows this op (core ⊂ standard ⊂ all; src/core/tiers.ts).
   * `core` is the daily loop of a worker (at most 8 ops, a test holds it); presentation only: the
   * role decides who may call it, and REST and the CLI serve every op whatever the tier.
   */
  readonly tier: Tier;
  readonly rest: RestRoute;
  readonly cli: CliSpec;
  /** For waiting ops: how long to wait (ms) when the handler answers RETRY. */
  readonly waitMs?: (input: z.infer<I>) => number;
  /**
   * A write whose handler may run beside others of its kind in one group commit, their
   * statements interleaved (db.ts WriteOptions.parallel): every statement it sends is right on
   * its own, whatever another op of the batch sent between two of them (fenced updates, a claim's
   * SKIP LOCKED update, the claim's expiry sweep guarded by each lease's token). The store runs
   * the batch again one op at a time when any of them fails.
   */
  readonly parallel?: boolean;
  handler(ctx: OpContext, input: z.infer<I>): Promise<z.infer<O> | typeof RETRY>;
}

/**
 * How an op module writes an op: as its OpDef, but with the input and output schemas as functions
 * that build them. Building the 48 ops' zod schemas at import was ~10-12 ms of a `baton mcp` cold
 * start on Node 24 (docs/BENCHMARKS.md), and a session needs an op's schemas only when that op is
 * first called (tools/list answers from JSON Schemas prebuilt at build time).
 */
export interface OpSpec<I extends z.ZodType, O extends z.ZodType> extends Omit<OpDef<I, O>, 'input' | 'output'> {
  /** Builds the input schema; called once, on the op's first use (parse, JSON Schema). */
  readonly input: () => I;
  /** Builds the output schema; called once, on its first use (output check, empty answer). */
  readonly output: () => O;
}

/**
 * Keeps each op's handler typed against its own schemas while the catalog holds them uniformly.
 * `input` and `output` become getters that build their schema on first read and keep it: every
 * reader sees one schema object per op, as when they were built at import.
 */
export function defineOp<I extends z.ZodType, O extends z.ZodType>(spec: OpSpec<I, O>): OpDef {
  let input: I | undefined;
  let output: O | undefined;
  const def: OpDef<I, O> = {
    ...spec,
    get input(): I {
      return (input ??= spec.input());
    },
    get output(): O {
      return (output ??= spec.output());
    },
  };
  return def as unknown as OpDef;
}
