import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createHmac } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The `baton` command as scripts see it: a real process (bin/baton.js over dist/), a minimal
 * environment, its own data dir per test. Covers exit codes, what goes to stdout vs stderr,
 * and the first-start key. Needs `npm run build` first (npm test does it).
 */
const BIN = resolve(import.meta.dirname, '../../bin/baton.js');
const run = promisify(execFile);

const KEY = /bat_[A-Za-z0-9_-]{43}/g;
const KEY_LINE = /^bat_[A-Za-z0-9_-]{43}$/;
const TASK_ID = /^tsk_[a-z2-7]{26}$/;
const TOKEN_ID = /^tok_[a-z2-7]{26}$/;
const ROLES = ['admin', 'lead', 'worker', 'observer'];

const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp root; the data dir inside it does not exist yet (`baton init` or `serve` creates it). */
function workspace(): { root: string; data: string } {
  const root = mkdtempSync(join(tmpdir(), 'baton-cli-'));
  temps.push(root);
  return { root, data: join(root, 'data') };
}

/** A fresh temp root with an initialised data dir (`baton init --data`); its admin key. */
async function initialised(): Promise<{ root: string; data: string; adminKey: string }> {
  const w = workspace();
  const r = await baton(['init', '--data', w.data]);
  expect(r.code, r.stderr).toBe(0);
  return { ...w, adminKey: (r.stderr.match(KEY) ?? [''])[0]! };
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function minimalEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), ...extra };
}

async function baton(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? tmpdir(),
      env: minimalEnv(opts.env),
      timeout: 20_000,
      encoding: 'utf8',
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; signal?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err; // spawn failure or killed by the timeout: not a CLI answer
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Runs a command that must succeed with `--json` and returns its one line of JSON. */
async function json<T>(args: string[], data: string): Promise<T> {
  const r = await baton([...args, '--json', '--data', data]);
  expect(r.stderr, `stderr of baton ${args.join(' ')}`).not.toMatch(/\n\s+at /);
  expect(r.code, `exit code of baton ${args.join(' ')}: ${r.stderr}`).toBe(0);
  const lines = r.stdout.split('\n');
  expect(lines.length, 'exactly one line then a newline').toBe(2);
  expect(lines[1]).toBe('');
  return JSON.parse(lines[0]!) as T;
}

function expectNoStack(r: Result): void {
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr).not.toMatch(/node:internal|dist\/.*\.js:\d+/);
}

const mode = (path: string): number => statSync(path).mode & 0o777;

interface TokenOut {
  id: string;
  name: string;
  role: string;
  project: string;
  prefix: string;
  server_admin: boolean;
  revoked_at: string | null;
}

interface TaskSummary {
  id: string;
  title: string;
  status: string;
  priority: number;
  labels: string[];
  lease: { owner: string; token: number; expires_at: string } | null;
}

interface TaskFull extends TaskSummary {
  depends_on: string[];
  result: { summary: string } | null;
  created_by: string;
  attempts: number;
}

describe('baton CLI: first start', () => {
  it('creates a private data dir, secrets and db, and leaves the admin key once in a 0600 file (not a TTY)', async () => {
    const { root, data } = workspace();
    expect(existsSync(data)).toBe(false);

    // Other commands never create a data dir (they fail naming it); `baton init` does.
    const refused = await baton(['agent', 'whoami', '--json', '--data', data], { cwd: root });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`no Baton database in ${data}`);
    expect(existsSync(data)).toBe(false);
    const first = await baton(['init', '--data', data], { cwd: root });
    expect(first.code).toBe(0);
    expectNoStack(first);

    expect(statSync(data).isDirectory()).toBe(true);
    expect(mode(data)).toBe(0o700);
    expect(mode(join(data, 'baton.db'))).toBe(0o600);
    expect(mode(join(data, 'secrets.json'))).toBe(0o600);
    for (const f of readdirSync(data)) expect(mode(join(data, f)) & 0o077, f).toBe(0);
    // --data was honoured: nothing was created in the working directory.
    expect(existsSync(join(root, '.baton'))).toBe(false);

    // Off a terminal the key goes to a 0600 file, never to stderr (the log stream).
    expect(first.stderr).not.toMatch(KEY);
    const keys = readFileSync(join(data, 'admin-key.txt'), 'utf8').match(KEY) ?? [];
    expect(keys).toHaveLength(1);
    const adminKey = keys[0]!;
    expect(first.stdout).not.toContain(adminKey);
    expect(first.stdout).not.toMatch(KEY);
    const whoami = await baton(['agent', 'whoami', '--json', '--data', data], { cwd: root });
    expect(whoami.stderr).not.toMatch(KEY);
    const me = JSON.parse(whoami.stdout) as { agent: { name: string; role: string }; server_admin: boolean };
    expect(me.agent).toMatchObject({ name: 'operator', role: 'admin' });

    // The printed key is the stored server-admin key (only its prefix is ever shown again).
    const second = await baton(['token', 'list', '--json', '--data', data], { cwd: root });
    expect(second.code).toBe(0);
    expect(second.stderr).not.toMatch(KEY);
    expect(second.stderr).not.toMatch(/server-admin key/);
    expect(second.stdout).not.toContain(adminKey);
    const { tokens } = JSON.parse(second.stdout) as { tokens: TokenOut[] };
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ name: 'admin', role: 'admin', server_admin: true, project: 'default' });
    expect(adminKey.startsWith(tokens[0]!.prefix)).toBe(true);

    // Nothing on disk holds the key in clear.
    for (const f of readdirSync(data)) {
      if (f !== 'admin-key.txt') expect(readFileSync(join(data, f)).includes(adminKey), f).toBe(false);
    }
  });

  it('tightens an existing data dir that others could read', async () => {
    const { data } = await initialised();
    chmodSync(data, 0o755);
    const r = await baton(['agent', 'whoami', '--json', '--data', data]);
    expect(r.code).toBe(0);
    expect(mode(data)).toBe(0o700);
    expect(r.stderr).not.toMatch(KEY);
  });
});

describe('baton token', () => {
  it('create prints exactly the new key on stdout, and creates a new project', async () => {
    const { data } = await initialised();

    const before = await baton(['token', 'list', '--project', 'alpha', '--json', '--data', data]);
    expect(before.code).not.toBe(0);
    expect(before.stderr).toMatch(/not_found/);

    const r = await baton(['token', 'create', '--project', 'alpha', '--role', 'worker', '--name', 'w1', '--data', data]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^bat_[A-Za-z0-9_-]{43}\n$/);
    const key = r.stdout.trim();
    expect(key).toMatch(KEY_LINE);
    expect(r.stderr).not.toContain(key);
    expect(r.stderr).toMatch(/tok_[a-z2-7]{26}/);

    const { tokens } = await json<{ tokens: TokenOut[] }>(['token', 'list', '--project', 'alpha'], data);
    expect(tokens).toHaveLength(1);
    expect(tokens[0]).toMatchObject({ name: 'w1', role: 'worker', project: 'alpha', server_admin: false });
    expect(key.startsWith(tokens[0]!.prefix)).toBe(true);
  });

  it('create --json prints one object with key and token', async () => {
    const { data } = await initialised();
    const out = await json<{ key: string; token: TokenOut & Record<string, unknown> }>(
      ['token', 'create', '--project', 'beta', '--role', 'lead', '--name', 'lead-1'],
      data,
    );
    expect(out.key).toMatch(KEY_LINE);
    expect(out.token.id).toMatch(TOKEN_ID);
    expect(out.token).toMatchObject({ name: 'lead-1', role: 'lead', project: 'beta', server_admin: false, revoked_at: null });
    expect(out.key.startsWith(out.token.prefix)).toBe(true);
    expect(out.token.prefix.length).toBeLessThan(out.key.length / 2);
    expect(Object.keys(out.token).some((k) => /hash|secret|^key$/i.test(k))).toBe(false);
  });

  it('an unknown role exits 2 naming the role and the known roles', async () => {
    const { data } = await initialised();
    const r = await baton(['token', 'create', '--project', 'p', '--role', 'wizard', '--name', 'n', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('wizard');
    for (const role of ROLES) expect(r.stderr).toContain(role);
    expectNoStack(r);
  });

  it('a missing --name fails with a message naming the field', async () => {
    const { data } = await initialised();
    const r = await baton(['token', 'create', '--project', 'p', '--role', 'worker', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^baton: .*\bname\b/m);
    expectNoStack(r);
    // Nothing was issued.
    const { tokens } = await json<{ tokens: TokenOut[] }>(['token', 'list', '--all'], data);
    expect(tokens.map((t) => t.name)).toEqual(['admin']);
  });

  it('list never shows key or hash material; revoke revokes', async () => {
    const { data } = await initialised();
    const created = await json<{ key: string; token: TokenOut }>(
      ['token', 'create', '--project', 'gamma', '--role', 'worker', '--name', 'w1'],
      data,
    );
    const pepper = (JSON.parse(readFileSync(join(data, 'secrets.json'), 'utf8')) as { key_pepper: string }).key_pepper;
    const hmac = createHmac('sha256', Buffer.from(pepper, 'base64url')).update(created.key).digest();
    const hmacB64 = hmac.toString('base64url');
    const hmacHex = hmac.toString('hex');

    const listed = await baton(['token', 'list', '--all', '--json', '--data', data]);
    expect(listed.code).toBe(0);
    for (const secret of [created.key, hmacB64, hmacHex, pepper]) {
      expect(listed.stdout).not.toContain(secret);
      expect(listed.stderr).not.toContain(secret);
    }
    expect(listed.stdout).not.toMatch(KEY);
    const { tokens } = JSON.parse(listed.stdout) as { tokens: (TokenOut & Record<string, unknown>)[] };
    expect(tokens.map((t) => t.name).sort()).toEqual(['admin', 'w1']);
    for (const t of tokens) expect(Object.keys(t).some((k) => /hash|secret|^key$/i.test(k)), t.id).toBe(false);

    const rev = await json<{ id: string; revoked: boolean }>(['token', 'revoke', created.token.id], data);
    expect(rev).toEqual({ id: created.token.id, revoked: true });
    const after = await json<{ tokens: TokenOut[] }>(['token', 'list', '--project', 'gamma'], data);
    expect(after.tokens[0]!.revoked_at).not.toBeNull();
    expect(Number.isNaN(Date.parse(after.tokens[0]!.revoked_at!))).toBe(false);

    const again = await json<{ id: string; revoked: boolean }>(['token', 'revoke', created.token.id], data);
    expect(again.revoked).toBe(false);

    const missing = await baton(['token', 'revoke', 'tok_aaaaaaaaaaaaaaaaaaaaaaaaaa', '--data', data]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/not_found/);
    expectNoStack(missing);
  });
});

describe('baton task', () => {
  it('add with flags, list by status, get', async () => {
    const { data } = await initialised();
    const added = await json<{ tasks: { id: string; status: string; created: boolean }[] }>(
      ['task', 'add', '--title', 'T', '--priority', '2', '--labels', 'a,b'],
      data,
    );
    expect(added.tasks).toHaveLength(1);
    const t = added.tasks[0]!;
    expect(t.id).toMatch(TASK_ID);
    expect(t).toMatchObject({ status: 'ready', created: true });

    const other = await json<{ tasks: { id: string }[] }>(['task', 'add', '--title', 'later'], data);
    const ready = await json<{ tasks: TaskSummary[]; next_cursor: string | null }>(['task', 'list', '--status', 'ready'], data);
    // Priority order: 2 before the default 5.
    expect(ready.tasks.map((x) => x.id)).toEqual([t.id, other.tasks[0]!.id]);
    expect(ready.tasks[0]).toMatchObject({ title: 'T', priority: 2, labels: ['a', 'b'], lease: null });
    const done = await json<{ tasks: TaskSummary[] }>(['task', 'list', '--status', 'done'], data);
    expect(done.tasks).toEqual([]);

    const got = await json<{ task: TaskFull }>(['task', 'get', t.id], data);
    expect(got.task).toMatchObject({
      id: t.id,
      title: 'T',
      status: 'ready',
      priority: 2,
      labels: ['a', 'b'],
      depends_on: [],
      created_by: 'operator',
      lease: null,
      result: null,
    });

    // Text mode (no --json) is still JSON, pretty-printed, on stdout.
    const text = await baton(['task', 'get', t.id, '--data', data]);
    expect(text.code).toBe(0);
    expect((JSON.parse(text.stdout) as { task: { id: string } }).task.id).toBe(t.id);

    const bad = await baton(['task', 'get', 'nope', '--data', data]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/\bid\b/);
    expectNoStack(bad);
  });

  it('batch with refs and depends_on; claim, complete, and the dependent becomes ready', async () => {
    const { data } = await initialised();
    const batch = {
      tasks: [
        { ref: 'test', title: 'Test it', depends_on: ['build'] },
        { ref: 'build', title: 'Build it', priority: 1 },
      ],
    };
    const r = await json<{ tasks: { id: string; ref: string; status: string }[] }>(
      ['task', 'add', '--input', JSON.stringify(batch)],
      data,
    );
    const [testT, buildT] = r.tasks;
    expect(testT).toMatchObject({ ref: 'test', status: 'blocked' });
    expect(buildT).toMatchObject({ ref: 'build', status: 'ready' });

    const dep = await json<{ task: TaskFull }>(['task', 'get', testT!.id], data);
    expect(dep.task.depends_on).toEqual([buildT!.id]);

    const ready = await json<{ tasks: TaskSummary[] }>(['task', 'list', '--status', 'ready'], data);
    expect(ready.tasks.map((x) => x.id)).toEqual([buildT!.id]);
    const blocked = await json<{ tasks: TaskSummary[] }>(['task', 'list', '--status', 'blocked'], data);
    expect(blocked.tasks.map((x) => x.id)).toEqual([testT!.id]);

    const worker = ['--as', 'w1', '--as-role', 'worker'];
    const claimed = await json<{ task: TaskFull | null }>(['task', 'claim', ...worker], data);
    expect(claimed.task).not.toBeNull();
    expect(claimed.task!.id).toBe(buildT!.id);
    expect(claimed.task!.status).toBe('claimed');
    expect(claimed.task!.lease).toMatchObject({ owner: 'w1' });
    const leaseToken = claimed.task!.lease!.token;
    expect(Number.isInteger(leaseToken)).toBe(true);
    expect(Date.parse(claimed.task!.lease!.expires_at)).toBeGreaterThan(Date.now());

    // Nothing else is ready: a second claim answers { task: null }, exit 0.
    const none = await json<{ task: TaskFull | null }>(['task', 'claim', '--as', 'w2', '--as-role', 'worker'], data);
    expect(none.task).toBeNull();

    // A stale lease token is refused.
    const stale = await baton([
      'task', 'complete', buildT!.id, '--lease-token', String(leaseToken + 1), '--result', '{"summary":"ok"}',
      ...worker, '--data', data,
    ]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/lease_lost/);
    expectNoStack(stale);
    // So is the right token from another agent.
    const thief = await baton([
      'task', 'complete', buildT!.id, '--lease-token', String(leaseToken), '--result', '{"summary":"ok"}',
      '--as', 'w2', '--as-role', 'worker', '--data', data,
    ]);
    expect(thief.code).toBe(1);
    expect(thief.stderr).toMatch(/lease_lost/);

    const done = await baton([
      'task', 'complete', buildT!.id, '--lease-token', String(leaseToken), '--result', '{"summary":"ok"}',
      ...worker, '--data', data,
    ]);
    expect(done.code).toBe(0);
    expectNoStack(done);
    expect(JSON.parse(done.stdout)).toEqual({ id: buildT!.id, status: 'done', unblocked: [testT!.id] });

    const built = await json<{ task: TaskFull }>(['task', 'get', buildT!.id], data);
    expect(built.task).toMatchObject({ status: 'done', result: { summary: 'ok' }, lease: null });
    const next = await json<{ task: TaskFull }>(['task', 'get', testT!.id], data);
    expect(next.task.status).toBe('ready');
    const nowReady = await json<{ tasks: TaskSummary[] }>(['task', 'list', '--status', 'ready'], data);
    expect(nowReady.tasks.map((x) => x.id)).toEqual([testT!.id]);
  });

  it('a cycle in a batch exits non-zero naming the cycle, and creates nothing', async () => {
    const { data } = await initialised();
    const batch = {
      tasks: [
        { ref: 'a', title: 'A', depends_on: ['c'] },
        { ref: 'b', title: 'B', depends_on: ['a'] },
        { ref: 'c', title: 'C', depends_on: ['b'] },
      ],
    };
    const r = await baton(['task', 'add', '--input', JSON.stringify(batch), '--data', data]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/cycle/);
    expect(r.stderr).toMatch(/\b[abc] -> [abc] -> [abc] -> [abc]\b/);
    expectNoStack(r);
    const all = await json<{ tasks: TaskSummary[] }>(['task', 'list'], data);
    expect(all.tasks).toEqual([]);
  });

  it('an invalid configuration exits 2 with one setting per line; a __proto__ key in the config file is refused, not applied', async () => {
    const { root, data } = await initialised();
    let r = await baton(['task', 'list', '--data', data], { env: { BATON_SWEEP_INTERVAL_MS: 'abc', BATON_LEASE_MS: '-1' } });
    expect(r.code).toBe(2);
    expectNoStack(r);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('baton: invalid configuration:');
    expect(lines.slice(1).sort()).toEqual([
      expect.stringMatching(/^ {2}leaseMs \(environment BATON_LEASE_MS\): minimum /),
      expect.stringMatching(/^ {2}sweepIntervalMs \(environment BATON_SWEEP_INTERVAL_MS\): expected number/),
    ]);
    expect(r.stderr).not.toContain('\\x0a');
    const file = join(root, 'proto.json');
    writeFileSync(file, '{"__proto__": {"leaseMs": 2000000}}');
    r = await baton(['task', 'list', '--data', data, '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`__proto__ (config file ${file}): unknown setting`);
  });

  it('--priority 11 exits 2 naming tasks.0.priority', async () => {
    const { data } = await initialised();
    const r = await baton(['task', 'add', '--title', 'x', '--priority', '11', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('tasks.0.priority');
    expectNoStack(r);
  });

  it('--input that is not JSON exits 2', async () => {
    const { data } = workspace();
    const r = await baton(['task', 'add', '--input', '{tasks:', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--input/);
    expectNoStack(r);
  });

  it('an observer may not create tasks', async () => {
    const { data } = await initialised();
    const r = await baton(['task', 'add', '--title', 'x', '--as', 'o1', '--as-role', 'observer', '--data', data]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/forbidden/);
    expectNoStack(r);
  });
});

describe('baton config errors', () => {
  it('BATON_PORT=abc exits 2 naming port and its source, before touching the data dir', async () => {
    const { data } = workspace();
    const r = await baton(['serve', '--data', data], { env: { BATON_PORT: 'abc' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\bport\b/);
    expect(r.stderr).toContain('BATON_PORT');
    expectNoStack(r);
    expect(existsSync(data)).toBe(false);
  });

  it('--port abc exits 2 naming port and the flag', async () => {
    const { data } = workspace();
    const r = await baton(['serve', '--port', 'abc', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\bport\b.*command-line flag/);
    expectNoStack(r);
  });

  it('--port 70000 exits 2 naming the maximum', async () => {
    const { data } = workspace();
    const r = await baton(['serve', '--port', '70000', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\bport\b/);
    expect(r.stderr).toContain('65535');
  });

  it('BATON_ENV=prod exits 2 naming the allowed values', async () => {
    const { data } = workspace();
    const r = await baton(['task', 'list', '--data', data], { env: { BATON_ENV: 'prod' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('BATON_ENV');
    expect(r.stderr).toContain('development');
    expect(r.stderr).toContain('production');
    expectNoStack(r);
    expect(existsSync(data)).toBe(false);
  });

  it('--config with an unknown key names the key', async () => {
    const { root, data } = workspace();
    const file = join(root, 'baton.json');
    writeFileSync(file, JSON.stringify({ port: 7411, portt: 7412 }));
    const r = await baton(['task', 'list', '--config', file, '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('portt');
    expect(r.stderr).toContain(file);
    expectNoStack(r);
  });

  it('--config naming a missing or broken file exits 2 naming the file', async () => {
    const { root, data } = workspace();
    const missing = join(root, 'nope.json');
    const r1 = await baton(['task', 'list', '--config', missing, '--data', data]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toContain(missing);
    const broken = join(root, 'broken.json');
    writeFileSync(broken, '{"port":');
    const r2 = await baton(['task', 'list', '--config', broken, '--data', data]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain(broken);
    expect(r2.stderr).toMatch(/JSON/);
    expectNoStack(r2);
  });
});

describe('baton serve', () => {
  it('listens, answers /healthz and REST, sees CLI revocations, and exits on SIGTERM', async () => {
    const { root, data } = await initialised();
    const created = await json<{ key: string; token: TokenOut }>(
      ['token', 'create', '--role', 'worker', '--name', 'w1'],
      data,
    );

    const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data', data], {
      cwd: root,
      env: minimalEnv({ BATON_LOG_LEVEL: 'warn' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
      child.once('exit', (code, signal) => res({ code, signal })),
    );
    let stderr = '';
    try {
      const url = await new Promise<string>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no "listening on" line; stderr: ${stderr}`)), 15_000);
        child.stderr!.setEncoding('utf8');
        child.stderr!.on('data', (chunk: string) => {
          stderr += chunk;
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
          if (m !== null) {
            clearTimeout(timer);
            res(m[1]!);
          }
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          rej(new Error(`serve exited early with ${String(code)}; stderr: ${stderr}`));
        });
      });
      expect(url).not.toMatch(/:0$/);
      // Not the first start: no key is printed again.
      expect(stderr).not.toMatch(KEY);

      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok' });

      const anon = await fetch(`${url}/api/v1/whoami`);
      expect(anon.status).toBe(401);

      const auth = { authorization: `Bearer ${created.key}` };
      const me = await fetch(`${url}/api/v1/whoami`, { headers: auth });
      expect(me.status).toBe(200);
      expect(await me.json()).toMatchObject({ agent: { name: 'w1', role: 'worker' } });

      // A revocation by another process (the CLI) is seen on the very next request.
      await json(['token', 'revoke', created.token.id], data);
      const revoked = await fetch(`${url}/api/v1/whoami`, { headers: auth });
      expect(revoked.status).toBe(401);
    } finally {
      child.kill('SIGTERM');
    }
    const end = await Promise.race([
      exited,
      new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), 10_000)),
    ]);
    if (end === 'timeout') child.kill('SIGKILL');
    expect(end).toEqual({ code: 0, signal: null });
  });

  it('a port already in use fails with a clear message, not a stack trace', async () => {
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
    const port = (blocker.address() as { port: number }).port;
    try {
      const { data } = workspace();
      const r = await baton(['serve', '--port', String(port), '--data', data]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/EADDRINUSE|in use/i);
      expectNoStack(r);
    } finally {
      await new Promise<void>((res) => blocker.close(() => res()));
    }
  });
});

describe('baton help', () => {
  it('--help lists the command groups', async () => {
    const r = await baton(['--help']);
    expect(r.code).toBe(0);
    for (const group of ['task', 'token', 'agent', 'plan', 'serve', 'mcp']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${group}\\b`, 'm'));
    }
  });

  it('task --help lists the task commands and their flags', async () => {
    const r = await baton(['task', '--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['add', 'list', 'get', 'claim', 'complete', 'fail', 'release']) {
      expect(r.stdout).toMatch(new RegExp(`^\\s+${cmd}\\b`, 'm'));
    }
    const add = await baton(['task', 'add', '--help']);
    expect(add.code).toBe(0);
    for (const flag of ['--title', '--priority', '--labels', '--depends-on', '--input', '--json', '--data']) {
      expect(add.stdout).toContain(flag);
    }
  });

  it('an unknown command exits 2', async () => {
    const r = await baton(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command/);
  });
});
