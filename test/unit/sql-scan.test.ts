import { readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * S17 "SQL is parameterized only". Every piece of SQL text in src/ must sit in a template tagged
 * directly with `sql` (whose values become bound parameters) or in a `trusted('…')` literal that
 * holds no statement text. Only the driver module and the fixed migration scripts are exempt.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');
const EXEMPT = new Set(['src/store/migrations.ts', 'src/store/sqlite.ts', 'src/store/sqlite-driver.ts', 'src/store/postgres.ts']);
/** Migration DDL: fixed scripts, one file per schema version, never built from input. */
const EXEMPT_DIR = 'src/store/schema/';

/** Statement text. Bare SELECT and WHERE clauses only in upper case, so English prose passes. */
const SQL_TEXT: readonly RegExp[] = [
  /\bSELECT\b/,
  /\bselect\b[\s\S]*?\bfrom\b/i,
  /\bINSERT\s+(?:OR\s+\w+\s+)?INTO\b/i,
  /\bUPDATE\s+[\w."]+\s+SET\b/i,
  /\bDELETE\s+FROM\b/i,
  /\b(?:CREATE|DROP|ALTER)\s+(?:TEMP(?:ORARY)?\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b/i,
  /\bPRAGMA\s+\w/,
  /\bWHERE\s+[\w."]+\s*(?:=|<>|!=|<=|>=|<|>|IN\b|IS\b|LIKE\b)/,
];

interface Finding {
  file: string;
  line: number;
  problem: string;
  text: string;
}

function looksLikeSql(text: string): boolean {
  return SQL_TEXT.some((re) => re.test(text));
}

function literalText(node: ts.StringLiteral | ts.NoSubstitutionTemplateLiteral | ts.TemplateExpression): string {
  if (!ts.isTemplateExpression(node)) return node.text;
  return node.head.text + node.templateSpans.map((s) => '${…}' + s.literal.text).join('');
}

function isSqlTagged(node: ts.Node, sf: ts.SourceFile): boolean {
  const parent = node.parent;
  return (
    parent !== undefined &&
    ts.isTaggedTemplateExpression(parent) &&
    parent.template === node &&
    parent.tag.getText(sf) === 'sql'
  );
}

function calleeName(call: ts.CallExpression): string | undefined {
  return ts.isIdentifier(call.expression) ? call.expression.text : undefined;
}

function scanSource(file: string, source: string): Finding[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];
  const report = (node: ts.Node, problem: string, text: string): void => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    findings.push({ file, line, problem, text: text.replace(/\s+/g, ' ').slice(0, 120) });
  };

  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateExpression(node)) {
      if (!isSqlTagged(node, sf)) {
        const text = literalText(node);
        if (looksLikeSql(text)) {
          const inTrusted =
            ts.isCallExpression(node.parent) && calleeName(node.parent) === 'trusted' && node.parent.arguments[0] === node;
          report(node, inTrusted ? 'trusted() literal holds statement text' : 'SQL text outside a sql`…` template', text);
        }
      }
    }
    if (ts.isCallExpression(node)) {
      const name = calleeName(node);
      if (name === 'trusted') {
        const arg = node.arguments[0];
        if (node.arguments.length !== 1 || arg === undefined || !(ts.isStringLiteral(arg) || ts.isNoSubstitutionTemplateLiteral(arg))) {
          report(node, 'trusted() takes exactly one plain string literal', node.getText(sf));
        }
      }
      if (name === 'sql') report(node, 'sql called as a function instead of as a tag', node.getText(sf));
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return findings;
}

function sourceFiles(): string[] {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => join(SRC, f))
    .sort();
}

const rel = (abs: string): string => relative(ROOT, abs).split(sep).join('/');

describe('S17: SQL is parameterized only (source scan)', () => {
  it('finds the source tree, including the modules that build queries', () => {
    const files = sourceFiles().map(rel);
    expect(files.length).toBeGreaterThan(10);
    expect(files).toContain('src/store/sql.ts');
    for (const exempt of EXEMPT) expect(files).toContain(exempt);
  });

  it('has no SQL text outside sql-tagged templates in src/', () => {
    const findings: Finding[] = [];
    let scanned = 0;
    let taggedWithSql = 0;
    for (const abs of sourceFiles()) {
      const file = rel(abs);
      if (EXEMPT.has(file) || file.startsWith(EXEMPT_DIR)) continue;
      const source = readFileSync(abs, 'utf8');
      scanned++;
      taggedWithSql += (source.match(/\bsql`/g) ?? []).length;
      findings.push(...scanSource(file, source));
    }
    expect(findings.map((f) => `${f.file}:${f.line} ${f.problem}: ${f.text}`)).toEqual([]);
    expect(scanned).toBeGreaterThan(10);
    // The scan looked at real queries: the store builds dozens of them with the tag.
    expect(taggedWithSql).toBeGreaterThan(20);
  });

  describe('self-check: the scanner can fail', () => {
    const bad = `
      import { sql, trusted } from './sql.js';
      export function a(id: string) { return db.prepare('SELECT * FROM tasks WHERE id = ' + id); }
      export function b(id: string) { return db.exec(\`DELETE FROM tasks WHERE id = '\${id}'\`); }
      export const c = "insert into tokens (id) values (1)";
      export const d = \`UPDATE tasks SET status = 'done'\`;
      export const e = String.raw\`SELECT 1\`;
      export const f = trusted('UPDATE tasks SET status = 1');
      export function g(name: string) { return trusted(name as 'x'); }
      export const h = sql(['DROP TABLE tasks'] as unknown as TemplateStringsArray);
      export const i = 'id = 1 ' + " WHERE status = 'ready'";
      export const j = notSql\`SELECT * FROM tasks\`;
      export const k = { q: 'select id from tasks' };
    `;

    it('flags every string-built query in a sample', () => {
      const findings = scanSource('sample.ts', bad);
      const byLine = new Map<number, string[]>();
      for (const f of findings) byLine.set(f.line, [...(byLine.get(f.line) ?? []), f.problem]);
      expect([...byLine.keys()].sort((x, y) => x - y)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
      expect(byLine.get(8)).toEqual(['trusted() literal holds statement text']);
      expect(byLine.get(9)).toEqual(['trusted() takes exactly one plain string literal']);
      expect(byLine.get(10)).toEqual(
        expect.arrayContaining(['sql called as a function instead of as a tag', 'SQL text outside a sql`…` template']),
      );
      expect(findings.find((f) => f.line === 3)?.text).toBe('SELECT * FROM tasks WHERE id = ');
    });

    it('passes sql-tagged queries, nested fragments, safe trusted() literals and prose', () => {
      const good = `
        import { join, list, sql, trusted } from './sql.js';
        export const q = (id: string) => sql\`SELECT * FROM tasks WHERE id = \${id}\`;
        export const r = (ids: string[]) =>
          sql\`DELETE FROM tasks WHERE \${join([sql\`a = \${1}\`, sql\`b IN \${list(ids)}\`], trusted(' AND '))}\`;
        export const s = sql\`UPDATE tasks SET status = 'done'\`;
        export const t = trusted(', attempts = 0, last_error = NULL');
        export const u = trusted(\`(NULL)\`);
        export const msg = 'Select a role; delete the task; update the plan';
        // SELECT * FROM tasks WHERE id = 'in a comment is fine'
        export const method = 'DELETE';
      `;
      expect(scanSource('good.ts', good)).toEqual([]);
    });

    it('recognises the real DDL in the exempt migrations file (the exemption is what keeps it out)', () => {
      const file = 'src/store/migrations.ts';
      const findings = scanSource(file, readFileSync(join(ROOT, file), 'utf8'));
      expect(findings.length).toBeGreaterThan(0);
      expect(findings.every((f) => f.problem === 'SQL text outside a sql`…` template')).toBe(true);
    });

    it('flags an untagged template nested inside a sql-tagged one', () => {
      const nested = 'export const q = (x: string) => sql`SELECT * FROM t WHERE ${`a IN (SELECT b FROM c WHERE d = ${x})`}`;';
      const findings = scanSource('nested.ts', nested);
      expect(findings).toHaveLength(1);
      expect(findings[0]!.problem).toBe('SQL text outside a sql`…` template');
    });
  });
});
