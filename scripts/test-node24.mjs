#!/usr/bin/env node
// Runs `npm test` (the whole suite, or the files given after `--`) on Node 24, fetched as the
// `node` npm package, so CI covers the node:sqlite driver beside Node 20's better-sqlite3. The
// better-sqlite3 in node_modules was built for the Node that ran `npm ci`; on 24 it does not load
// and Baton runs on node:sqlite, as it would where better-sqlite3 was never installed.
//
// Not `npx -p node@24`: npx keeps the binary under ~/.npm, which is private to the user on most
// machines, and the suite runs some CLI calls as an unprivileged user (test/faults/datadir-cli),
// who must be able to execute that node. So it goes into a fresh world-readable temp prefix.
// BATON_TEST_NODE picks another version (e.g. 22.16). execFile with argument arrays, no shell.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const version = process.env.BATON_TEST_NODE || '24';
if (!/^\d+(\.\d+){0,2}$/.test(version)) {
  console.error(`test-node24: BATON_TEST_NODE must be a Node version like 24 or 22.16.0 (got ${JSON.stringify(version)})`);
  process.exit(2);
}
const prefix = mkdtempSync(join(tmpdir(), 'baton-node-'));
let status = 1;
try {
  chmodSync(prefix, 0o755);
  execFileSync('npm', ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', prefix, `node@${version}`], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const env = { ...process.env, PATH: `${join(prefix, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}` };
  const actual = execFileSync('node', ['--version'], { env, encoding: 'utf8' }).trim();
  console.log(`test-node24: npm test on Node ${actual}`);
  const r = spawnSync('npm', ['test', '--', ...process.argv.slice(2)], { env, stdio: 'inherit' });
  status = r.status ?? 1;
} finally {
  rmSync(prefix, { recursive: true, force: true });
}
process.exit(status);
