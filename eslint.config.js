import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const DRIVER_AND_SHELL = [
  { name: 'better-sqlite3', message: 'Only src/store/sqlite-driver.ts talks to the driver.' },
  { name: 'pg', message: 'Only the PostgreSQL dialect module talks to the driver.' },
  { name: 'child_process', message: 'Use node:child_process execFile with an argument array, never a shell.' },
];

/** One config block per layer: its files may not import the layers it denies (type-only imports of store/db.js excepted). */
function layers(specs) {
  return specs.flatMap(({ dir, deny, except = [] }) => {
    const rule = (denied) => [
      'error',
      {
        paths: DRIVER_AND_SHELL,
        patterns: denied.map((layer) => ({
          group: [`../${layer}`, `../${layer}/*`, `../../${layer}`, `../../${layer}/*`, `../${layer}.js`, `../../${layer}.js`],
          message: `src/${dir} may not import src/${layer} (layer boundary, docs/ARCHITECTURE.md).`,
          ...(layer === 'store' ? { allowTypeImports: true } : {}),
        })),
      },
    ];
    const blocks = [{ files: [`src/${dir}/**/*.ts`], ignores: ['src/store/sqlite.ts', 'src/store/sqlite-driver.ts', 'src/store/postgres.ts', ...except], rules: { 'no-restricted-imports': rule(deny) } }];
    if (except.length > 0) {
      blocks.push({ files: except, rules: { 'no-restricted-imports': rule(deny.filter((d) => d !== 'store')) } });
    }
    return blocks;
  });
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/out/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: false } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportAllDeclaration', message: 'Use explicit named exports (house style).' },
      ],
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'child_process', message: 'Use node:child_process execFile with an argument array, never a shell.' },
          ],
        },
      ],
    },
  },
  // Type-aware rules: a promise nobody awaits or catches is how a rejected store call became a crash.
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  // Layer boundaries (docs/ARCHITECTURE.md "Layers"), plus S17: only the dialect modules reach a
  // database driver, and never a shell.
  { files: ['src/*.ts'], rules: { 'no-restricted-imports': ['error', { paths: DRIVER_AND_SHELL }] } },
  ...layers([
    { dir: 'core', deny: ['store', 'events', 'auth', 'os', 'ops', 'api', 'cli', 'security', 'settings', 'hub', 'config', 'log'] },
    { dir: 'store', deny: ['events', 'auth', 'os', 'ops', 'api', 'cli', 'security', 'hub'] },
    { dir: 'events', deny: ['auth', 'os', 'ops', 'api', 'cli', 'security', 'hub'] },
    { dir: 'os', deny: ['store', 'events', 'auth', 'ops', 'api', 'cli', 'security', 'hub'] },
    { dir: 'auth', deny: ['events', 'ops', 'api', 'cli', 'hub'] },
    { dir: 'security', deny: ['events', 'ops', 'api', 'cli', 'hub'] },
    { dir: 'ops', deny: ['api', 'cli', 'hub'] },
    // Surfaces reach the store only through ops; the exceptions are documented in ARCHITECTURE.md.
    // session.ts (browser sessions: authentication, like auth-routes.ts), stream.ts (the event
    // stream's one shared read per doorbell ring) and metrics.ts (gauges read from the store).
    {
      dir: 'api',
      deny: ['cli', 'store'],
      except: ['src/api/http/auth-routes.ts', 'src/api/http/session.ts', 'src/api/http/stream.ts', 'src/api/http/metrics.ts'],
    },
    // doctor opens the database file itself (no Hub) to examine a possibly damaged store; backup
    // dumps and restores a store below the hub (restore targets an empty store no hub runs on).
    { dir: 'cli', deny: ['store'], except: ['src/cli/keys.ts', 'src/cli/doctor.ts', 'src/cli/setup/profile.ts', 'src/cli/migrate.ts', 'src/cli/backup.ts'] },
  ]),
  {
    files: ['bin/**/*.js', 'bench/**/*.mjs', 'scripts/**/*.mjs', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly' } },
  },
  // bin/ is CommonJS (bin/package.json): its entry starts faster without the ES-module loader.
  {
    files: ['bin/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
