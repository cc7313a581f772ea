import type { Migration } from '../db.js';

/**
 * The tool tier of a key (issue 11): which of the catalog's tools its MCP tools/list shows
 * (core, standard, all; src/core/tiers.ts). NULL: the server's default (`toolsDefault`), so keys
 * made before this migration keep showing what they showed. Portable DDL (TEXT with a CHECK):
 * the same statement runs on SQLite and PostgreSQL.
 */
const DDL = `
ALTER TABLE tokens ADD COLUMN tools TEXT CHECK (tools IS NULL OR tools IN ('core', 'standard', 'all'));
`;

export const V13_TOKEN_TOOLS: Migration = { version: 13, name: 'tool tier per key', sqlite: DDL, postgres: DDL };
