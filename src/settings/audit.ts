import { int } from './kit.js';

/**
 * Audit and log settings (S29, S30). Logs are JSON lines on stderr: their retention belongs to
 * whatever collects stderr (systemd-journald, the container runtime, logrotate), not to Baton.
 */
export const AUDIT_SETTINGS = {
  shape: {
    /** Audit rows older than this many days are removed by the sweeper (0: kept forever). */
    auditRetentionDays: int(0, 36_500).default(0),
    /** Authentication failures from one address within a minute that raise a SUSPICIOUS_ACTIVITY event. */
    auditAuthFailureLimit: int(2, 10_000).default(10),
  },
  env: {
    auditRetentionDays: 'BATON_AUDIT_RETENTION_DAYS',
    auditAuthFailureLimit: 'BATON_AUDIT_AUTH_FAILURE_LIMIT',
  },
} as const;
