#!/usr/bin/env node
'use strict';
// CommonJS (bin/package.json): an ES-module entry costs a start the ES-module loader, ~5 ms more
// (`baton mcp` cold start, issue 11).
const { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } = require('node:fs');
const module_ = require('node:module');
const { homedir } = require('node:os');
const { dirname, join } = require('node:path');
const { setFlagsFromString } = require('node:v8');
const { Script } = require('node:vm');

// A start allocates ~15 MB that lives on (the bundle's code, module state, zod schemas). V8 grows
// its young generation x2 per scavenge, so that data was copied by 6-8 scavenges, 20-50 ms of a
// `baton mcp` start on Node 20 and 24 (--trace-gc); growing x32 leaves 1-3. Only the growth rate
// changes, the young generation's cap stays V8's; the cost is memory: a process busy with calls
// keeps a larger young generation (+15-20 MB RSS after 300 calls, docs/BENCHMARKS.md). Set
// before the bundle is compiled, so its code cache is made and checked under the same flags;
// left alone when the operator sets a young-generation flag (NODE_OPTIONS=--max-semi-space-size=N,
// or node's own arguments).
if (!/semi-space/.test(`${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`)) setFlagsFromString('--semi-space-growth-factor=32');

// Runs the bundled CLI (dist/bundle/baton.cjs, `npm run build`) with V8's compiled code for it
// cached on disk, so a start skips parsing and compiling it (`baton mcp` cold start, issue 11:
// docs/BENCHMARKS.md). The same mechanism as Node's own compile cache, which Node 20 lacks for
// this case. The cache lives in a per-user directory, never the shared tmp dir: an entry is code
// this process would run. NODE_DISABLE_COMPILE_CACHE=1 turns it off; NODE_COMPILE_CACHE picks
// the directory.

const STALE_MS = 7 * 24 * 3600 * 1000;

function cacheDir() {
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return null;
  if (process.env.NODE_COMPILE_CACHE) return process.env.NODE_COMPILE_CACHE;
  try {
    const base =
      process.platform === 'win32'
        ? (process.env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'))
        : process.platform === 'darwin'
          ? join(homedir(), 'Library', 'Caches')
          : process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
    return join(base, 'baton', 'compile-cache');
  } catch {
    return null; // no usable home directory: start without a cache
  }
}

/**
 * Loads the bundle through vm.Script with cachedData. An entry is named by Node version,
 * architecture, the bundle's size, mtime and inode (a rebuilt or reinstalled bundle gets a new
 * one) and the command (each entry holds the functions its own command's start compiled); V8
 * also rejects data made by another V8 or other flags. A missing or rejected entry is written at
 * exit (then the functions this run used are compiled too), atomically, readable by the user only.
 */
function loadBundle(dir) {
  const file = join(__dirname, '../dist/bundle/baton.cjs');
  // No cache, or source maps wanted (NODE_OPTIONS=--enable-source-maps; Node maps traces only for
  // code its own loader loaded): Node's plain require.
  if (dir === null || process.sourceMapsEnabled === true) return require(file);
  // ASCII only (scripts/bundle.mjs makes it so): latin1 is a plain copy, UTF-8 decoding is not.
  const source = readFileSync(file, 'latin1');
  const st = statSync(file);
  const command = /^[a-z][a-z-]{0,30}$/.test(process.argv[2] ?? '') ? process.argv[2] : 'other';
  const entry = join(dir, `baton-${process.version}-${process.arch}-${st.size}-${Math.trunc(st.mtimeMs)}-${st.ino}-${command}.v8`);
  let cachedData;
  try {
    const fd = openSync(entry, 'r');
    try {
      // Only an entry this user wrote and nobody else can change (an XDG_CACHE_HOME on a shared
      // path must not let another user's file run here).
      const own = fstatSync(fd);
      const mine = process.getuid === undefined || (own.uid === process.getuid() && (own.mode & 0o022) === 0);
      cachedData = mine ? readFileSync(fd) : undefined;
    } finally {
      closeSync(fd);
    }
  } catch {
    cachedData = undefined;
  }
  const script = new Script(module_.wrap(source), { filename: file, cachedData });
  if (cachedData === undefined || script.cachedDataRejected === true) {
    process.once('exit', () => {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const tmp = `${entry}.${process.pid}.tmp`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
        renameSync(tmp, entry);
        // Entries of other builds and Node versions (~1 MB each), and temp files a killed write
        // left, go once unwritten for a week; mtime is the write time, so an entry still in use
        // elsewhere is at worst rewritten once.
        for (const name of readdirSync(dir)) {
          if (!/^baton-.*\.v8(\.\d+\.tmp)?$/.test(name) || join(dir, name) === entry) continue;
          const path = join(dir, name);
          if (Date.now() - statSync(path).mtimeMs > STALE_MS) unlinkSync(path);
        }
      } catch {
        // A cache that cannot be written costs the next start its compile, nothing else.
      }
    });
  }
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, module_.createRequire(file), mod, file, dirname(file));
  return mod.exports;
}

const { main } = loadBundle(cacheDir());
// main() reports its own failures; anything else ends the process as an uncaught error would.
main(process.argv).catch((err) => {
  process.nextTick(() => {
    throw err;
  });
});
