import type { GoneSignal } from '../core/gone.js';

/** Who calls. Identity comes only from the credential (S10), never from op arguments. */
export interface Principal {
  /** The token behind this principal; null for the local operator (CLI on the data dir) and keyless stdio. */
  readonly tokenId: string | null;
  readonly projectId: string;
  readonly projectName: string;
  readonly role: string;
  readonly agentId: string;
  readonly agentName: string;
  /** May manage tokens of every project (the first-start admin key and the local operator). */
  readonly serverAdmin: boolean;
}

export type Transport = 'mcp-stdio' | 'mcp-http' | 'rest' | 'cli' | 'internal';

export interface CallMeta {
  readonly requestId: string;
  readonly transport: Transport;
  readonly address?: string;
  /** Aborted when the caller goes away: waits end early. */
  readonly signal?: GoneSignal;
  /**
   * The longest this call may wait (ms), below what was asked: a surface whose clients cut long
   * calls (MCP: mcpWaitCapMs) sets it; the wait then answers its empty result at the cap.
   */
  readonly maxWaitMs?: number;
}
