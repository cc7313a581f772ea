import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, runBaton, tempDir, woken } from '../helpers.js';

/**
 * `baton watch` as a real process: a message sent by another process prints a line (the
 * cross-process doorbell wakes it: the wait is far longer than the bound here), --json prints one
 * object per line, SIGTERM exits 0, and a restart resumes from the persisted cursor (nothing
 * printed twice, nothing missed while it was down). Needs `npm run build`.
 */
const cleanups: (() => void)[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  for (const c of cleanups.splice(0)) c();
});

async function project(): Promise<{ dir: string; data: string }> {
  const t = tempDir('baton-watch-');
  cleanups.push(t.cleanup);
  const data = join(t.dir, '.baton');
  expect((await runBaton(['init', '--data', data])).code).toBe(0);
  const setup = await runBaton(['setup', 'mcp-json', '--agent', 'w1', '--project-dir', t.dir, '--data', data]);
  expect(setup.code, setup.stderr).toBe(0);
  return { dir: t.dir, data };
}

interface Watcher {
  child: ChildProcess;
  /** The next stdout line. */
  line(): Promise<string>;
  started: Promise<void>;
  exit: Promise<number | null>;
}

function startWatch(data: string, extra: string[] = []): Watcher & { stderr(): string } {
  const child = spawn(process.execPath, [BIN, 'watch', '--agent', 'w1', '--data', data, ...extra], {
    // No periodic re-check: only the cross-process doorbell can end a round early.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', BATON_WAIT_RECHECK_MS: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiters.shift();
    if (w !== undefined) w(l);
    else lines.push(l);
  });
  let err = '';
  const started = new Promise<void>((resolve) => {
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString('utf8');
      if (err.includes('baton watch: w1')) resolve();
    });
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    line: () => (lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise<string>((resolve) => waiters.push(resolve))),
    started,
    exit,
    stderr: () => err,
  };
}

/** `baton serve` on `port` (0: any); its URL once it listens. */
async function startServe(data: string, port: number): Promise<{ child: ChildProcess; url: string; exit: Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--data', data, '--port', String(port)], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', BATON_LOG_LEVEL: 'warn', BATON_WAIT_RECHECK_MS: '0' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let err = '';
  const url = await woken(
    new Promise<string>((resolve) => {
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString('utf8');
        const m = /listening on (http:\/\/\S+?) /.exec(err);
        if (m !== null) resolve(m[1]!);
      });
    }),
  );
  return { child, url, exit };
}

const send = async (data: string, subject: string): Promise<void> => {
  const r = await runBaton(['message', 'send', '--to-agents', 'w1', '--subject', subject, '--body', 'b', '--data', data]);
  expect(r.code, r.stderr).toBe(0);
};

describe('baton watch', () => {
  it('prints a line when another process sends the agent mail, exits 0 on SIGTERM, and resumes from its cursor', async () => {
    const p = await project();
    const w = startWatch(p.data);
    await woken(w.started);
    await send(p.data, 's1');
    // Each round waits up to 25 s for the doorbell; the bound is the test's, not a timing goal.
    const line = await woken(w.line(), 15_000);
    expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+ mail from operator: msg_\w+ — read it with message_inbox$/);
    w.child.kill('SIGTERM');
    expect(await woken(w.exit)).toBe(0);
    const cursorFile = join(p.data, 'agents', 'w1.cursor');
    expect(existsSync(cursorFile)).toBe(true);
    const saved = readFileSync(cursorFile, 'utf8').trim();

    // Mail while nobody watches; a task ready for anyone.
    await send(p.data, 's2');
    expect((await runBaton(['task', 'add', '--title', 'x', '--data', p.data])).code).toBe(0);
    const again = startWatch(p.data, ['--json']);
    const first = JSON.parse(await woken(again.line())) as { type: string; actor: string; id: string };
    expect(first).toMatchObject({ type: 'message.received', actor: 'operator' });
    const second = JSON.parse(await woken(again.line())) as { type: string; data: { status: string } };
    expect(second).toMatchObject({ type: 'task.created', data: { status: 'ready' } });
    again.child.kill('SIGINT');
    expect(await woken(again.exit)).toBe(0);
    expect(readFileSync(cursorFile, 'utf8').trim()).not.toBe(saved);
  });

  it('--url: watches a hub over HTTP, and reconnects when the hub restarts', async () => {
    const p = await project();
    const first = await startServe(p.data, 0);
    const port = Number(new URL(first.url).port);
    const w = startWatch(p.data, ['--url', first.url]);
    await woken(w.started);
    await send(p.data, 'over http');
    expect(await woken(w.line(), 15_000)).toContain('mail from operator');
    // The hub goes away (its drain answers the long poll empty), then comes back on the same port.
    first.child.kill('SIGTERM');
    expect(await woken(first.exit)).toBe(0);
    await woken(
      (async () => {
        while (!w.stderr().includes('the hub is unavailable')) await new Promise((r) => setTimeout(r, 50));
      })(),
    );
    const second = await startServe(p.data, port);
    await send(p.data, 'after restart');
    expect(await woken(w.line(), 20_000)).toContain('mail from operator');
    w.child.kill('SIGTERM');
    expect(await woken(w.exit)).toBe(0);
    second.child.kill('SIGTERM');
    await woken(second.exit);
  });

  it('--url: a hub that accepts the connection and never answers is unavailable after the round\'s bound (retried), not a hang', async () => {
    const p = await project();
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket)); // reads nothing, answers nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      silent.close();
    });
    const w = startWatch(p.data, ['--url', `http://127.0.0.1:${(silent.address() as AddressInfo).port}`]);
    await woken(
      (async () => {
        while (!w.stderr().includes('the hub is unavailable')) await new Promise((r) => setTimeout(r, 50));
      })(),
      25_000,
    );
    expect(w.stderr()).toMatch(/no answer from http:\/\/127\.0\.0\.1:\d+ within 15 s/);
    w.child.kill('SIGTERM');
    expect(await woken(w.exit)).toBe(0);
  }, 40_000);

  it('warns once before a held lease expires', async () => {
    const p = await project();
    expect((await runBaton(['task', 'add', '--title', 'leased', '--data', p.data])).code).toBe(0);
    // The same agent (name and role) as w1's key, acting through the local CLI.
    const claim = await runBaton(['task', 'claim', '--lease-ms', '600000', '--json', '--as', 'w1', '--as-role', 'worker', '--data', p.data]);
    expect(claim.code, claim.stderr).toBe(0);
    const id = (JSON.parse(claim.stdout) as { task: { id: string } }).task.id;
    const w = startWatch(p.data, ['--lease-warn-s', '3600']);
    const line = await woken(w.line());
    expect(line).toContain(`lease of task ${id} expires at`);
    expect(line).toContain('task_heartbeat it');
    w.child.kill('SIGTERM');
    expect(await woken(w.exit)).toBe(0);
  });

  it('refuses to start without an identity, or with a revoked key', async () => {
    const p = await project();
    const none = await runBaton(['watch', '--data', p.data]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('who is watching?');
    const tokens = JSON.parse((await runBaton(['token', 'list', '--json', '--data', p.data])).stdout) as { tokens: { id: string; name: string }[] };
    expect((await runBaton(['token', 'revoke', tokens.tokens.find((t) => t.name === 'w1')!.id, '--data', p.data])).code).toBe(0);
    const revoked = await runBaton(['watch', '--agent', 'w1', '--data', p.data]);
    expect(revoked.code).toBe(1);
    expect(revoked.stderr).toContain('the key is not valid');
  });
});
