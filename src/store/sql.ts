/**
 * The only way to build SQL in Baton (S17). A query is a template whose interpolated values
 * become bound parameters; nested `Sql` fragments are spliced in. There is no way to turn a
 * runtime string into SQL text: `trusted()` accepts only string literal types, for fixed
 * fragments such as column lists chosen from a closed set. A test walks `src/` and fails on
 * any other construction of SQL text.
 */
const SQL = Symbol('sql');

export interface Sql {
  readonly [SQL]: true;
  readonly parts: readonly string[];
  readonly values: readonly unknown[];
}

export type Placeholder = (index: number) => string;

function make(parts: readonly string[], values: readonly unknown[]): Sql {
  return { [SQL]: true, parts, values };
}

export function isSql(value: unknown): value is Sql {
  return typeof value === 'object' && value !== null && (value as { [SQL]?: unknown })[SQL] === true;
}

export function sql(strings: TemplateStringsArray, ...values: unknown[]): Sql {
  if (!values.some(isSql)) return make(strings, values);
  const parts: string[] = [strings[0]!];
  const flat: unknown[] = [];
  values.forEach((value, i) => {
    if (isSql(value)) {
      parts[parts.length - 1] += value.parts[0]!;
      for (let j = 0; j < value.values.length; j++) {
        flat.push(value.values[j]);
        parts.push(value.parts[j + 1]!);
      }
      parts[parts.length - 1] += strings[i + 1]!;
    } else {
      flat.push(value);
      parts.push(strings[i + 1]!);
    }
  });
  return make(parts, flat);
}

/** A fixed SQL fragment. Only string literal types are accepted, never a runtime string. */
export function trusted<T extends string>(text: string extends T ? never : T): Sql {
  return make([text], []);
}

export const empty: Sql = make([''], []);

export function join(fragments: readonly Sql[], separator: Sql = trusted(', ')): Sql {
  if (fragments.length === 0) return empty;
  let out = fragments[0]!;
  for (let i = 1; i < fragments.length; i++) out = sql`${out}${separator}${fragments[i]!}`;
  return out;
}

/** `(?, ?, ?)` for a list of values; an empty list renders `(NULL)`, which matches nothing. */
export function list(values: readonly unknown[]): Sql {
  if (values.length === 0) return trusted('(NULL)');
  return sql`(${join(values.map((v) => sql`${v}`))})`;
}

/**
 * `(?, ?, …), (?, ?, …)` for a multi-row INSERT: every value bound, built in one pass (a join of
 * row fragments copies its parts once per row).
 */
export function rows(values: readonly (readonly unknown[])[]): Sql {
  const parts: string[] = [];
  const flat: unknown[] = [];
  let open = '(';
  for (const row of values) {
    row.forEach((v, i) => {
      parts.push(i === 0 ? open : ', ');
      flat.push(v);
    });
    open = '), (';
  }
  parts.push(values.length === 0 ? '' : ')');
  if (values.length === 0) return empty;
  return make(parts, flat);
}

const rendered = new WeakMap<Placeholder, WeakMap<readonly string[], string>>();

/** Renders the text with the dialect's placeholders; cached per dialect and template. */
export function render(query: Sql, placeholder: Placeholder): string {
  let cache = rendered.get(placeholder);
  if (cache === undefined) {
    cache = new WeakMap();
    rendered.set(placeholder, cache);
  }
  const cached = cache.get(query.parts);
  if (cached !== undefined) return cached;
  let text = query.parts[0]!;
  for (let i = 1; i < query.parts.length; i++) text += placeholder(i) + query.parts[i]!;
  // Template arrays are frozen and live as long as their call site: safe WeakMap keys.
  if (Object.isFrozen(query.parts)) cache.set(query.parts, text);
  return text;
}
