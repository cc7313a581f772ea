import { ms } from './kit.js';

/**
 * Settings of the lifecycle area (fragment spread into ConfigSchema; env names beside each):
 * how waits re-check, how long a request body may take, and how long a stop drains.
 */
export const LIFECYCLE_SETTINGS = {
  shape: {
    /**
     * A waiting op (task_claim, message_inbox, events_wait, … with wait_ms) re-runs at least this
     * often even without a doorbell ring (ms); 0: only a ring wakes it (tests use 0 so a broken
     * doorbell fails them).
     */
    waitRecheckMs: ms(0, 300_000).default(1_000),
    /**
     * A request's headers and body must arrive within this long of its first byte (ms), so a
     * client that trickles a body cannot hold a connection. Waits are not affected: the body is
     * read before the op runs.
     */
    bodyTimeoutMs: ms(100, 600_000).default(10_000),
    /** On SIGTERM/SIGINT, how long in-flight requests may take to finish before the hub closes anyway (ms). */
    drainTimeoutMs: ms(0, 600_000).default(10_000),
  },
  env: {
    waitRecheckMs: 'BATON_WAIT_RECHECK_MS',
    bodyTimeoutMs: 'BATON_BODY_TIMEOUT_MS',
    drainTimeoutMs: 'BATON_DRAIN_TIMEOUT_MS',
  },
} as const;
