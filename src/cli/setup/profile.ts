import type { Hub } from '../../hub.js';
import { setAgentProfile } from '../../store/directory.js';

/**
 * The agent's kind (the client it runs in) and capabilities, as `baton setup` declares them.
 * No op sets them apart from `task_claim` (which an agent passes its capabilities to); setup is
 * the operator's local command, so it writes them directly (an ESLint exception like keys.ts).
 */
export async function setProfile(hub: Hub, agentId: string, kind: string, capabilities: readonly string[]): Promise<void> {
  await hub.db.write((ex) => setAgentProfile(ex, agentId, kind, capabilities));
}
