import { AUDIT_OPS } from './audit.js';
import type { OpDef } from './catalog.js';
import { DISCOVERY_OPS } from './discoveries.js';
import { EVENT_OPS } from './events.js';
import { LOCK_OPS } from './locks.js';
import { MEMORY_OPS } from './memory.js';
import { MESSAGE_OPS } from './messages.js';
import { ORIENTATION_OPS } from './orientation.js';
import { PRIME_OPS } from './prime.js';
import { OVERSIGHT_OPS } from './oversight.js';
import { SESSION_OPS } from './sessions.js';
import { TASK_OPS } from './tasks.js';
import { TOKEN_OPS } from './tokens.js';

/** The catalog: every op Baton has, in the order tools/list shows them. */
export const CATALOG: readonly OpDef[] = [
  ...ORIENTATION_OPS,
  ...PRIME_OPS,
  ...TASK_OPS,
  ...MESSAGE_OPS,
  ...MEMORY_OPS,
  ...DISCOVERY_OPS,
  ...SESSION_OPS,
  ...LOCK_OPS,
  ...OVERSIGHT_OPS,
  ...EVENT_OPS,
  ...TOKEN_OPS,
  ...AUDIT_OPS,
];
