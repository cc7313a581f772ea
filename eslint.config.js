import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
  {
    files: ['src/**/*.ts'],
    ignores: ['src/store/sqlite.ts'],
    rules: {
      // S17: only the dialect modules reach a database driver; everything else goes through the `sql` tag.
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'better-sqlite3', message: 'Only src/store/sqlite.ts talks to the driver.' },
            { name: 'pg', message: 'Only the PostgreSQL dialect module talks to the driver.' },
            { name: 'child_process', message: 'Use node:child_process execFile with an argument array, never a shell.' },
          ],
        },
      ],
    },
  },
  {
    files: ['bin/**/*.js', 'bench/**/*.mjs', 'scripts/**/*.mjs', 'eslint.config.js'],
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly' } },
  },
);
