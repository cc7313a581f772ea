import { cliLogLevel, hubExists, locateConfig, requireDataDir } from './common.js';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { pino } from 'pino';
import { Hub } from '../hub.js';
import { addKeyToFile, AAD, SEALED_PREFIX, type Cipher } from '../security/crypto.js';
import { openDataProtection } from '../security/production.js';
import type { Db } from '../store/db.js';
import { setMessageContent, staleMessages } from '../store/messages.js';
import { setMemoryValue, staleMemory } from '../store/memory.js';
import { setHandoffPackage, staleHandoffs } from '../store/sessions.js';
import { SEALED_TABLES, setSealed, staleRows, type SealedRow, type SealedTable } from '../store/sealed.js';

type SealedName = keyof typeof SEALED_TABLES;

export type Reencrypted = { messages: number; memory: number; handoffs: number } & Record<SealedName, number>;

const str = (r: SealedRow, k: string): string => String(r[k]);

/** The additional data of a column of each table of SEALED_TABLES, from its row (as the ops bind it). */
const AAD_OF: Record<SealedName, (r: SealedRow, column: string) => string> = {
  tasks: (r, c) => AAD.task(str(r, 'project_id'), str(r, 'id'), c as Parameters<typeof AAD.task>[2]),
  plans: (r, c) => AAD.plan(str(r, 'project_id'), c as 'goal' | 'body'),
  discoveries: (r, c) => AAD.discovery(str(r, 'project_id'), str(r, 'id'), c as 'content' | 'files'),
  decisions: (r, c) => AAD.decision(str(r, 'project_id'), str(r, 'id'), c as 'what' | 'why' | 'alternatives'),
  approvals: (r, c) => AAD.approval(str(r, 'project_id'), str(r, 'id'), c as 'action' | 'details' | 'reason'),
  locks: (r, c) => AAD.lock(str(r, 'project_id'), str(r, 'id'), c as 'reason'),
  sessions: (r, c) => AAD.session(str(r, 'project_id'), str(r, 'id'), c as 'goal' | 'summary'),
  session_checkpoints: (r, c) => AAD.checkpoint(str(r, 'session_id'), Number(r.seq), c as 'summary' | 'completed'),
};

const NO_COUNTS = (): Reencrypted => ({
  messages: 0,
  memory: 0,
  handoffs: 0,
  ...(Object.fromEntries(Object.keys(SEALED_TABLES).map((k) => [k, 0])) as Record<SealedName, number>),
});

/**
 * Re-seals every content field not sealed under the cipher's current key (plaintext written
 * before encryption was on, or values of older keys), in batches, one write transaction per
 * batch, so the hub keeps serving in between. Old keys stay in the keyring: a value missed here
 * (written by a process still on the old key) stays readable through its key id.
 */
export async function reencryptAll(db: Db, cipher: Cipher, batch = 200): Promise<Reencrypted> {
  const prefix = `${SEALED_PREFIX}${cipher.currentKeyId}:`;
  const done = NO_COUNTS();
  const rounds = async (step: () => Promise<number>): Promise<number> => {
    let total = 0;
    for (;;) {
      const n = await step();
      total += n;
      if (n < batch) return total;
    }
  };
  done.messages = await rounds(() =>
    db.write(async (ex) => {
      const rows = await staleMessages(ex, prefix, batch);
      for (const m of rows) {
        const reseal = (col: 'subject' | 'body', v: string): string => {
          const a = AAD.message(m.project_id, m.id, col);
          return cipher.seal(cipher.open(v, a), a);
        };
        await setMessageContent(ex, m.seq, m.subject === '' ? '' : reseal('subject', m.subject), reseal('body', m.body));
      }
      return rows.length;
    }),
  );
  done.memory = await rounds(() =>
    db.write(async (ex) => {
      const rows = await staleMemory(ex, prefix, batch);
      for (const r of rows) {
        const a = AAD.memory(r.project_id, r.owner, r.key);
        await setMemoryValue(ex, { projectId: r.project_id, owner: r.owner, key: r.key }, cipher.seal(cipher.open(r.value, a), a));
      }
      return rows.length;
    }),
  );
  done.handoffs = await rounds(() =>
    db.write(async (ex) => {
      const rows = await staleHandoffs(ex, prefix, batch);
      for (const h of rows) {
        const reseal = (col: 'summary' | 'next_goals' | 'memory_keys' | 'files'): string => {
          const a = AAD.handoff(h.project_id, h.id, col);
          return cipher.seal(cipher.open(h[col], a), a);
        };
        await setHandoffPackage(ex, h.id, {
          summary: reseal('summary'),
          next_goals: reseal('next_goals'),
          memory_keys: reseal('memory_keys'),
          files: reseal('files'),
        });
      }
      return rows.length;
    }),
  );
  for (const name of Object.keys(SEALED_TABLES) as SealedName[]) {
    const t: SealedTable = SEALED_TABLES[name];
    done[name] = await rounds(() =>
      db.write(async (ex) => {
        const rows = await staleRows(ex, t, prefix, batch);
        for (const r of rows) {
          const values = new Map<string, string | null>();
          for (const { name: column } of t.columns) {
            const v = r[column];
            if (typeof v !== 'string' || v.startsWith(prefix)) continue;
            const a = AAD_OF[name](r, column);
            values.set(column, cipher.seal(cipher.open(v, a), a));
          }
          await setSealed(ex, t, r.rid, values);
        }
        return rows.length;
      }),
    );
  }
  return done;
}

interface RotateFlags {
  data?: string;
  config?: string;
  json?: boolean;
}

/**
 * `baton keys rotate`: a new current encryption key, then every content field re-encrypted under
 * it. Development (keys in the data dir's keyring.json): the key is generated and added there
 * (created, 0600, on the first rotate: that turns encryption on). Keys from the environment
 * (always in production): the new key must be put there by the operator; the command says how,
 * and re-encrypts under whatever key is current now.
 */
export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('Encryption keys of content at rest');
  keys
    .command('rotate')
    .description('Add a new current encryption key and re-encrypt stored content under it')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--json', 'print the result as one line of JSON')
    .action(async (opts: RotateFlags) => {
      const { config } = requireDataDir(locateConfig(opts, { logLevel: cliLogLevel() }));
      const dataDir = resolve(config.dataDir);
      const fromEnv = (process.env.BATON_ENCRYPTION_KEYS ?? '') !== '' || (process.env.BATON_ENCRYPTION_KEYS_FILE ?? '') !== '';
      const log = pino({ level: 'warn' }, pino.destination(2));
      let added: string | null = null;
      if (config.env === 'production' || fromEnv) {
        process.stderr.write(
          'Encryption keys come from BATON_ENCRYPTION_KEYS / BATON_ENCRYPTION_KEYS_FILE here, so this command cannot add one.\n' +
            'To rotate: 1. make a key: `openssl rand -base64 32`; 2. put `<new id>:<that key>` FIRST in the keyring,\n' +
            'keeping the old keys after it; 3. restart the hub; 4. run `baton keys rotate` again: it re-encrypts\n' +
            'everything under the (new) current key. Drop an old key only after that.\n',
        );
      } else {
        added = addKeyToFile(dataDir, new Date()).id;
      }
      const { cipher } = openDataProtection(config, dataDir, log);
      let counts = NO_COUNTS();
      if (cipher !== undefined && hubExists(config)) {
        const hub = await Hub.open(config, { log });
        try {
          counts = await reencryptAll(hub.db, cipher);
        } finally {
          await hub.close();
        }
      }
      const out = { added, current: cipher?.currentKeyId ?? null, keys: cipher?.keyIds ?? [], reencrypted: counts };
      if (opts.json === true) process.stdout.write(JSON.stringify(out) + '\n');
      else {
        if (added !== null) process.stdout.write(`new current key ${added} (keyring ${join(dataDir, 'keyring.json')})\n`);
        process.stdout.write(
          `re-encrypted under ${out.current ?? '(no key)'}: ${counts.messages} messages, ${counts.memory} memory entries, ${counts.handoffs} handoffs, ` +
            `${counts.tasks} tasks, ${counts.plans} plans, ${counts.discoveries} discoveries, ${counts.decisions} decisions, ` +
            `${counts.approvals} approvals, ${counts.locks} locks, ${counts.sessions} sessions, ${counts.session_checkpoints} checkpoints\n`,
        );
        if (added !== null) process.stdout.write('restart running hubs so that new writes use the new key (old keys still read)\n');
      }
    });
}
