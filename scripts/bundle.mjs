// Bundles the CLI (src/cli/entry.ts and everything it imports, dependencies included) into
// dist/bundle/baton.cjs. `baton mcp` then loads one file instead of ~600 (issue 11: module
// resolution and loading were most of its cold start; see docs/BENCHMARKS.md).
// bin/baton.js runs the bundle; tsc's per-file dist/ stays beside it (the deferred audit worker
// runs from dist/ops/deferred-worker.js, tests import dist/ modules).
import { build } from 'esbuild';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const outdir = join(root, 'dist', 'bundle');

// Code that finds files next to itself (`new URL('../package.json', import.meta.url)`, the worker
// file, the dashboard's dist/web, bin/baton.js for hooks) must keep finding them from inside the
// bundle: each source file's `import.meta.url` becomes the URL of its own tsc output in dist/,
// computed from the bundle's location at run time (so an installed package works wherever it is).
const ownUrl = (base) => ({
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      let text = await readFile(args.path, 'utf8');
      if (args.path.startsWith(src + sep) && text.includes('import.meta.url')) {
        const compiled = join(root, 'dist', relative(src, args.path)).replace(/\.ts$/, '.js');
        const rel = relative(outdir, compiled).split(sep).join('/');
        text = text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, ${base}).href`);
      }
      return { contents: text, loader: 'ts' };
    });
  },
});

// Every op's input JSON Schema, computed now from tsc's output of the same sources (the build runs
// tsc first) and inlined: src/api/mcp/tools.ts then skips the zod conversion at run time.
const { CATALOG } = await import(join(root, 'dist', 'ops', 'index.js'));
const { computeInputJsonSchema } = await import(join(root, 'dist', 'api', 'mcp', 'tools.js'));
const schemas = Object.fromEntries(CATALOG.map((op) => [op.name, computeInputJsonSchema(op)]));

// zod's classic API re-exports all ~40 of its message locales (`z.locales`), 378 KB of the start
// path's 1.6 MB, parsed and run at every start; Baton and the MCP SDK use only the default
// English messages (`config(en())` inside zod), so the bundle's `z.locales` has `en` alone.
const englishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
      contents: "export { default as en } from './en.js';\n",
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

await rm(outdir, { recursive: true, force: true });

// One CommonJS file: bin/baton.js runs it through vm.Script with V8's cachedData, so a start skips
// parsing and compiling it. Measured against an ES-module bundle (split into chunks, Node's own
// compile cache on Node 24, none on Node 20), interleaved medians: Node 20 292 → 228 ms, Node 24
// 144 → 133 ms. Lazy imports (the HTTP server, pg, jose, prom-client) become functions in the
// same file that run on first use.
const result = await build({
  metafile: true,
  bundle: true,
  platform: 'node',
  target: 'node20',
  // The native driver and pg's optional native binding stay require()d from node_modules.
  external: ['better-sqlite3', 'pg-native'],
  // Maps let `node --enable-source-maps` name src/ lines in stack traces; enabling them at start
  // cost ~35 ms of a `baton mcp` cold start, so it is left to the operator (docs/CONFIGURATION.md).
  sourcemap: 'linked',
  sourcesContent: false,
  // Class and function names as in the sources (pino's err.type, error names), not esbuild's renames.
  keepNames: true,
  legalComments: 'inline',
  define: { BATON_PREBUILT_INPUT_SCHEMAS: JSON.stringify(schemas) },
  logLevel: 'warning',
  // entry.ts, not main.ts: a plain `baton mcp` never loads the command line (src/cli/entry.ts).
  entryPoints: [join(src, 'cli', 'entry.ts')],
  format: 'cjs',
  outfile: join(outdir, 'baton.cjs'),
  plugins: [ownUrl('__batonFileUrl'), englishOnly],
  // The bundle's own URL, taken before any module can shadow `require` (sqlite-driver.ts does).
  banner: { js: "var __batonFileUrl = require('node:url').pathToFileURL(__filename).href;" },
});

// esbuild escapes non-ASCII characters in code (its default charset), but comments it keeps may
// still hold some (—, →, ≤). One such character makes the file UTF-8 to decode and V8's source a
// two-byte string: reading it cost a `baton mcp` start ~7 ms against ~3 ms for ASCII, which
// bin/baton.js reads as latin1 (a copy). Inside a comment an escape is only text.
const bundleFile = join(outdir, 'baton.cjs');
const text = await readFile(bundleFile, 'utf8');
const ascii = text.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
if (ascii !== text) await writeFile(bundleFile, ascii);

// The bundle holds copies of its dependencies' code: their licenses go beside it, one section per
// package (name, version, license text), for a package that ships the bundle.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = /^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\//.exec(input);
  if (m !== null) packages.set(m[2], join(root, m[1]));
}
const sections = [];
for (const [name, dir] of [...packages].sort(([a], [b]) => a.localeCompare(b))) {
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'));
  const files = (await readdir(dir)).filter((f) => /^(licen[cs]e|copying|notice)/i.test(f)).sort();
  const texts = await Promise.all(files.map((f) => readFile(join(dir, f), 'utf8')));
  const license = typeof pkg.license === 'string' ? pkg.license : 'see text';
  sections.push(`${name}@${pkg.version} (${license})\n\n${texts.join('\n').trim() || '(no license file in the package; license: ' + license + ')'}\n`);
}
await writeFile(join(outdir, 'THIRD-PARTY-LICENSES.txt'), `Third-party code bundled into baton.cjs\n\n${sections.join('\n' + '-'.repeat(72) + '\n\n')}`);
