import type { OpDef } from './catalog.js';
import { ORIENTATION_OPS } from './orientation.js';
import { TASK_OPS } from './tasks.js';
import { TOKEN_OPS } from './tokens.js';

/** The catalog: every op Baton has, in the order tools/list shows them. */
export const CATALOG: readonly OpDef[] = [...ORIENTATION_OPS, ...TASK_OPS, ...TOKEN_OPS];
