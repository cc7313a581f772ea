import { z } from 'zod';

/** Settings of the store area (fragment spread into ConfigSchema; env names beside each). */
export const STORE_SETTINGS = {
  shape: {
    /**
     * `full` (default): an acknowledged write is on disk (SQLite synchronous = FULL; group commit
     * shares one fsync per batch). `normal`: faster, survives a crash of the process but not a
     * power loss or an OS crash (the last commits before it may roll back).
     */
    durability: z.enum(['full', 'normal']).default('full'),
  },
  env: {
    durability: 'BATON_DURABILITY',
  },
} as const;
