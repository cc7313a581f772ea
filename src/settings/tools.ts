import { z } from 'zod';
import { TIERS } from '../core/tiers.js';
import { ms } from './kit.js';

/**
 * Settings of what MCP clients are shown and how long one MCP call may wait (issue 11; fragment
 * spread into ConfigSchema, env names beside each). docs/CONFIGURATION.md has the per-client
 * timeouts these defaults sit under.
 */
export const TOOLS_SETTINGS = {
  shape: {
    /** The tool tier of a key that has none (`baton token create --tools` sets one): core, standard or all. */
    toolsDefault: z.enum(TIERS).default('all'),
    /**
     * The longest one MCP tool call waits (ms), whatever its wait_ms asks (up to waitMaxMs): at the
     * cap a wait answers its empty result, as when its own wait_ms runs out, and the agent calls
     * again. 50 s sits under the 60 s request timeout of the official MCP SDK clients and of
     * Codex (tool_timeout_sec), the shortest common cut. REST and the CLI are not capped.
     */
    mcpWaitCapMs: ms(1_000, 300_000).default(50_000),
    /**
     * While an MCP call waits and its request carries a progressToken, a progress notification
     * every this many ms (0: none). Keeps streams alive and lets clients that reset their timeout
     * on progress wait longer.
     */
    waitProgressMs: ms(0, 300_000).default(15_000),
  },
  env: {
    toolsDefault: 'BATON_TOOLS_DEFAULT',
    mcpWaitCapMs: 'BATON_MCP_WAIT_CAP_MS',
    waitProgressMs: 'BATON_WAIT_PROGRESS_MS',
  },
} as const;
