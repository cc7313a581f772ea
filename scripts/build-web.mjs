// Builds the dashboard (web/) into dist/web: one minified JS bundle and one CSS file, both named
// by a hash of their content (served with a year-long immutable cache), and index.html (never
// cached) that names them. No CDN, no inline script or style: the CSP allows only 'self'.
// Prints the gzipped size of the JavaScript; fails past the 150 KB budget (issue 10).
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');
const BUDGET_GZ = 150 * 1024;

const result = await build({
  entryPoints: [join(root, 'web', 'src', 'main.tsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  write: false,
  legalComments: 'none',
  logLevel: 'warning',
});
const js = result.outputFiles[0].contents;
const css = readFileSync(join(root, 'web', 'src', 'style.css'));
const hash = (buf) => createHash('sha256').update(buf).digest('hex').slice(0, 12);
const jsName = `app-${hash(js)}.js`;
const cssName = `app-${hash(css)}.css`;

// Each file is written beside its final name and renamed into place, and stale assets are removed
// only after index.html names the new ones: a hub starting meanwhile (tests run in parallel) reads
// either the old build or the new one, never a half-written file.
const put = (path, data) => {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
};
mkdirSync(join(out, 'assets'), { recursive: true });
put(join(out, 'assets', jsName), js);
put(join(out, 'assets', cssName), css);
const html = readFileSync(join(root, 'web', 'index.html'), 'utf8')
  .replace('%APP_JS%', `/assets/${jsName}`)
  .replace('%APP_CSS%', `/assets/${cssName}`);
put(join(out, 'index.html'), html);
for (const name of readdirSync(join(out, 'assets'))) {
  if (name !== jsName && name !== cssName && !name.includes('.tmp-')) rmSync(join(out, 'assets', name), { force: true });
}

const gz = gzipSync(js, { level: 9 }).length;
console.log(`dashboard: ${jsName} ${(js.length / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzipped (budget ${BUDGET_GZ / 1024} KB); ${cssName} ${(css.length / 1024).toFixed(1)} KB`);
if (gz > BUDGET_GZ) {
  console.error('dashboard JavaScript is over its gzipped budget');
  process.exit(1);
}
