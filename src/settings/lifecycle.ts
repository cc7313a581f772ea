/** Settings of the lifecycle area (fragment spread into ConfigSchema; env names beside each). */
export const LIFECYCLE_SETTINGS = {
  shape: {},
  env: {},
} as const;
