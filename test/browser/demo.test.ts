import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureDashboardBuilt } from './browser.js';

ensureDashboardBuilt();

/**
 * `npm run demo` (without its build step): the script starts, prints a URL that serves the
 * dashboard and an admin key that opens a browser session, its agents put the plan on the board,
 * and SIGTERM stops it cleanly and removes its data dir.
 */
describe('npm run demo', () => {
  it('prints a working dashboard URL and login key, agents fill the board, and it stops cleanly', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', resolve(import.meta.dirname, '../../scripts/demo.ts')], {
      cwd: resolve(import.meta.dirname, '../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((ok) => child.on('exit', (code) => ok(code)));
    try {
      const deadline = Date.now() + 30_000;
      while (!/Admin key:\s+bat_/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const url = /Dashboard:\s+(http:\/\/\S+?)\/?\s/.exec(out)?.[1];
      const key = /Admin key:\s+(bat_\S+)/.exec(out)?.[1];
      const dir = /data dir \((\S+)\)/.exec(out)?.[1];
      expect(url, out).toBeDefined();
      expect(key).toBeDefined();
      expect(dir !== undefined && existsSync(dir)).toBe(true);
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('/assets/app-');
      const login = await fetch(`${url}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json', origin: url! }, body: JSON.stringify({ key }) });
      expect(login.status).toBe(200);
      const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
      const csrf = ((await login.json()) as { csrf: string }).csrf;
      const tasks = (await (await fetch(`${url}/api/v1/tasks?limit=50`, { headers: { cookie, 'x-csrf-token': csrf } })).json()) as { tasks: { title: string }[] };
      expect(tasks.tasks.map((t) => t.title)).toContain('Deploy to staging');
      const agents = (await (await fetch(`${url}/api/v1/agents`, { headers: { cookie, 'x-csrf-token': csrf } })).json()) as { agents: { name: string }[] };
      expect(agents.agents.map((a) => a.name)).toEqual(expect.arrayContaining(['lead', 'ada', 'bruno', 'chen', 'dara', 'watcher']));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(dir!)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
