import type { HubEvent, TaskState } from './api';

const ALL: readonly TaskState[] = ['blocked', 'ready', 'claimed', 'running', 'done', 'failed', 'cancelled'];

/**
 * Which board columns an event can change, so the board refetches those and not all seven (a
 * browser has 6 connections per host, one taken by the stream: seven reads per event queue up).
 * `null` (a resync) and anything unknown: all of them.
 */
export function columnsOf(e: HubEvent | null): readonly TaskState[] {
  if (e === null) return ALL;
  if (!e.type.startsWith('task.')) return [];
  switch (e.type) {
    case 'task.created': {
      const s = e.data?.status;
      return typeof s === 'string' && (ALL as readonly string[]).includes(s) ? [s as TaskState] : ALL;
    }
    case 'task.claimed':
      return ['ready', 'claimed'];
    case 'task.started':
    case 'task.lease_transferred':
      return ['claimed', 'running'];
    case 'task.done':
      return ['claimed', 'running', 'done'];
    case 'task.failed':
      return ['claimed', 'running', 'failed'];
    case 'task.retry':
    case 'task.lease_expired':
      return ['claimed', 'running', 'ready', 'failed'];
    case 'task.ready':
      return ['blocked', 'ready', 'claimed', 'running', 'failed'];
    default:
      return ALL;
  }
}
