import { int, ms } from './kit.js';

const DAY = 86_400_000;

/**
 * Retention (what the sweeper removes, in bounded chunks). Events are pruned by default (they
 * grew ≈19 MB per 2 minutes of load); finished tasks and read messages are kept unless a
 * retention is set, since they are history someone may still read. 0 turns a limit off.
 */
export const RETENTION_SETTINGS = {
  shape: {
    /** Events older than this are removed (0: no age limit). A cursor into removed events gets `cursor_expired`. */
    eventRetentionMs: ms(0, 10 * 365 * DAY).default(7 * DAY),
    /** At most this many events are kept (0: no count limit). */
    eventRetentionMax: int(0, 1_000_000_000).default(1_000_000),
    /** Done, failed and cancelled tasks are removed this long after they finished (0: kept forever). */
    taskRetentionMs: ms(0, 10 * 365 * DAY).default(0),
    /** Threads whose every message is read (and acknowledged when asked) are removed this long after their newest message (0: kept forever). */
    messageRetentionMs: ms(0, 10 * 365 * DAY).default(0),
    /** How often the sweeper runs retention. */
    retentionIntervalMs: ms(1_000, DAY).default(60_000),
    /** Rows removed per transaction (finished tasks: a quarter of it). Each chunk holds the write lock briefly; retention then pauses as long as it took, and other writers run. */
    retentionChunk: int(100, 100_000).default(2_000),
  },
  env: {
    eventRetentionMs: 'BATON_EVENT_RETENTION_MS',
    eventRetentionMax: 'BATON_EVENT_RETENTION_MAX',
    taskRetentionMs: 'BATON_TASK_RETENTION_MS',
    messageRetentionMs: 'BATON_MESSAGE_RETENTION_MS',
    retentionIntervalMs: 'BATON_RETENTION_INTERVAL_MS',
    retentionChunk: 'BATON_RETENTION_CHUNK',
  },
} as const;
