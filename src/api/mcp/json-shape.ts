/**
 * Shape checks of JSON-RPC messages, shared by the two fast paths that answer the usual messages
 * without the SDK: `baton mcp`'s handshake (stdio-fast.ts) and the HTTP lean path (lean.ts).
 * Each admits only shapes the SDK's own schemas accept; anything else goes to the SDK.
 */
export type Json = Record<string, unknown>;

/** A JSON-RPC request id as the SDK accepts it: a string or a (safe) integer. */
export type Id = string | number;

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function isEmptyObject(v: unknown): boolean {
  return isObject(v) && Object.keys(v).length === 0;
}

export function isId(v: unknown): v is Id {
  return typeof v === 'string' || (typeof v === 'number' && Number.isSafeInteger(v));
}

/** `o` has every key in `required` and no key outside `required` and `optional`. */
export function hasShape(o: Json, required: readonly string[], optional: readonly string[] = []): boolean {
  for (const k of required) if (!(k in o)) return false;
  for (const k of Object.keys(o)) if (!required.includes(k) && !optional.includes(k)) return false;
  return true;
}
