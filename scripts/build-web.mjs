// Builds the dashboard (web/) into dist/web: one minified JS bundle and one CSS file, both named
// by a hash of their content (served with a year-long immutable cache), and index.html (never
// cached) that names them. No CDN, no inline script or style: the CSP allows only 'self'.
// Prints the gzipped size of the JavaScript; fails past the 150 KB budget (issue 10).
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });
writeFileSync(join(out, 'assets', jsName), js);
writeFileSync(join(out, 'assets', cssName), css);
const html = readFileSync(join(root, 'web', 'index.html'), 'utf8')
  .replace('%APP_JS%', `/assets/${jsName}`)
  .replace('%APP_CSS%', `/assets/${cssName}`);
writeFileSync(join(out, 'index.html'), html);

const gz = gzipSync(js, { level: 9 }).length;
console.log(`dashboard: ${jsName} ${(js.length / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzipped (budget ${BUDGET_GZ / 1024} KB); ${cssName} ${(css.length / 1024).toFixed(1)} KB`);
if (gz > BUDGET_GZ) {
  console.error('dashboard JavaScript is over its gzipped budget');
  process.exit(1);
}
