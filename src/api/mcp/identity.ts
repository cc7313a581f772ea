import { VERSION } from '../../version.js';

// What the server says about itself in its handshake. Kept apart from server.ts so the stdio
// fast handshake (stdio-fast.ts) can answer without loading the MCP SDK.

export const SERVER_INFO = { name: 'baton', version: VERSION } as const;
/**
 * The server's instructions (initialize result): what an agent pays for in every session, so
 * short (≤ 1 KB, a test holds it) and about the loop only. Names only core tools.
 */
export const INSTRUCTIONS = [
  'Baton coordinates a team of agents on one task board. The loop:',
  '1. prime: who you are, what you hold, what is next. Again after a restart or a compaction.',
  '2. task_claim (wait_ms waits for work): you get a task and its lease token.',
  '3. lock_acquire the files you will edit (with task_id: released when the task ends); never edit files another agent holds.',
  '4. Work; task_heartbeat before the lease expires.',
  '5. task_complete with a result, or task_fail with the error. Then back to 2.',
  'message_inbox reads your mail (wait_ms waits for it); message_send writes to agents, a role or everyone.',
  'Fewer tools listed than you need? Connect with tools=standard or all (BATON_TOOLS, ?tools=, X-Baton-Tools); every op is also on the baton CLI and REST.',
].join('\n');
