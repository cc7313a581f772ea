/** Settings of the retention area (fragment spread into ConfigSchema; env names beside each). */
export const RETENTION_SETTINGS = {
  shape: {},
  env: {},
} as const;
