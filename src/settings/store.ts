/** Settings of the store area (fragment spread into ConfigSchema; env names beside each). */
export const STORE_SETTINGS = {
  shape: {},
  env: {},
} as const;
