/** The one wire format of a time: ISO 8601 in UTC with milliseconds (`2026-01-31T12:00:00.000Z`). */
export function iso(ms: number): string;
export function iso(ms: number | null): string | null;
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
