import { int } from './kit.js';

/**
 * Data protection (S31, S32). Secrets and encryption keys are never settings (a config file is
 * no place for them): they come from BATON_KEY_PEPPER(_FILE), BATON_JWT_SECRET(_FILE) and
 * BATON_ENCRYPTION_KEYS(_FILE), see src/auth/secrets.ts and src/security/crypto.ts.
 */
export const DATA_SETTINGS = {
  shape: {
    /**
     * With encryption at rest on, a message text search (`query` of message_search and
     * message_inbox) decrypts up to this many candidate messages per call, newest first, and
     * filters them in the hub; message_search then returns a cursor to continue further back.
     */
    encryptedSearchScan: int(100, 100_000).default(1000),
  },
  env: {
    encryptedSearchScan: 'BATON_ENCRYPTED_SEARCH_SCAN',
  },
} as const;
