#!/usr/bin/env node
import module from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

// Node's compile cache (Node ≥ 22.8): V8 code for the bundle is kept on disk, so later starts skip
// parsing and compiling it (`baton mcp` cold start, Node 24: see docs/BENCHMARKS.md). In a
// per-user directory, never the shared tmp dir: a cache entry is code this process would run.
// NODE_DISABLE_COMPILE_CACHE=1 turns it off; on older Node this does nothing.
if (typeof module.enableCompileCache === 'function' && process.env.NODE_COMPILE_CACHE === undefined) {
  try {
    const base =
      process.platform === 'win32'
        ? (process.env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'))
        : process.platform === 'darwin'
          ? join(homedir(), 'Library', 'Caches')
          : (process.env.XDG_CACHE_HOME || join(homedir(), '.cache'));
    module.enableCompileCache(join(base, 'baton', 'compile-cache'));
  } catch {
    // No usable home directory: start without the cache.
  }
}

const { main } = await import('../dist/bundle/baton.js');
await main(process.argv);
