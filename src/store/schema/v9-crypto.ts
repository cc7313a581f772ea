import type { Migration } from '../db.js';

export const V9_CRYPTO: Migration = {
  version: 9,
  name: 'encryption keys',
  sqlite: `
-- SCAFFOLD: tables of this area go here
SELECT 1;
`,
};
