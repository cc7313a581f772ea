/**
 * Tool tiers: how much of the catalog an MCP client is shown in tools/list. Every byte of
 * tools/list is paid in every turn of every agent, so a worker that only runs the daily loop
 * needs far fewer tools than a lead or an admin. Tiers nest: core ⊂ standard ⊂ all. An op's
 * tier is the smallest tier that lists it.
 *
 * A tier is presentation, never permission: the role alone decides what a caller may call, a
 * tool outside the tier can still be called over MCP, and every op stays reachable over REST
 * and the CLI whatever the tier.
 */
export const TIERS = ['core', 'standard', 'all'] as const;
export type Tier = (typeof TIERS)[number];

const RANK: Readonly<Record<Tier, number>> = { core: 0, standard: 1, all: 2 };

export function isTier(v: unknown): v is Tier {
  return typeof v === 'string' && (TIERS as readonly string[]).includes(v);
}

/** Does a connection at `tier` list an op whose own tier is `opTier`? */
export function tierShows(tier: Tier, opTier: Tier): boolean {
  return RANK[opTier] <= RANK[tier];
}

/** The message of a refused tier value (an env var, a query parameter, a header). */
export function tierError(where: string, value: string): string {
  return `${where}: unknown tool tier "${value.slice(0, 40)}"; expected one of ${TIERS.join(', ')}`;
}
