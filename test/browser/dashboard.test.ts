import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttp, type HttpHandle } from '../../src/api/http/server.js';
import { Hub } from '../../src/hub.js';
import { pino } from 'pino';
import { createKey, httpAgent, openHub, serve, tempDir, testConfig, type Agent, type TestHub } from '../helpers.js';
import { HAVE_CHROMIUM, ensureDashboardBuilt, openBrowser, signIn, type Browser } from './browser.js';

ensureDashboardBuilt();

/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core) against a real hub:
 * agents act over MCP, the page must follow live; hostile strings stay text; writes need the CSRF
 * token; an observer is offered nothing it may not do. `npm run build` (or scripts/build-web.mjs)
 * must have written dist/web first. Screenshots of the main views are always taken (a view that
 * cannot render fails here); they replace docs/screenshots/ only with BATON_SCREENSHOTS=1, so a
 * test run leaves the checkout clean.
 */
const SHOTS =
  process.env.BATON_SCREENSHOTS === '1' ? resolve(import.meta.dirname, '../../docs/screenshots') : join(tmpdir(), `baton-screenshots-${process.pid}`);
const WAIT = { timeout: 15_000 };

const card = (page: Page, state: string, id: string) => page.locator(`section[data-state="${state}"] li[data-task="${id}"]`);

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: resolve(SHOTS, `${name}.png`) });
}

describe.skipIf(!HAVE_CHROMIUM)('dashboard in Chromium', () => {
  let t: TestHub;
  let http: HttpHandle;
  let worker: Agent;
  let lead: Agent;
  let observerKey: string;

  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    worker = await httpAgent('v2', http.url, await createKey(t, 'ada', 'worker'));
    lead = await httpAgent('v2', http.url, await createKey(t, 'lena', 'lead'));
    observerKey = await createKey(t, 'olga', 'observer');
  });
  afterAll(async () => {
    await worker?.close();
    await lead?.close();
    await http?.close();
    await t?.close();
  });

  async function browse(key: string, colorScheme: 'light' | 'dark' = 'light'): Promise<Browser> {
    const b = await openBrowser({ colorScheme });
    await signIn(b.page, `${http.url}/`, key);
    await b.page.locator('[data-testid="live"]', { hasText: 'live' }).waitFor(WAIT);
    return b;
  }

  it('a task created and claimed over MCP appears, then moves columns, without a reload', async () => {
    const b = await browse(t.adminKey);
    try {
      let loads = 0;
      b.page.on('load', () => loads++);
      const { tasks } = await lead.ok<{ tasks: { id: string }[] }>('task_create', {
        tasks: [
          { ref: 'a', title: 'Write the exporter', priority: 7, labels: ['backend'] },
          { ref: 'b', title: 'Ship the exporter', depends_on: ['a'] },
        ],
      });
      const [a, dep] = [tasks[0]!.id, tasks[1]!.id];
      await card(b.page, 'ready', a).waitFor(WAIT);
      await card(b.page, 'blocked', dep).locator(`.deps a[href="#/task/${a}"]`, { hasText: 'Write the exporter' }).waitFor(WAIT);
      const claimed = await worker.ok<{ task: { id: string } }>('task_claim', { id: a });
      expect(claimed.task.id).toBe(a);
      const moved = card(b.page, 'claimed', a);
      await moved.waitFor(WAIT);
      await moved.locator('.holder', { hasText: 'ada' }).waitFor(WAIT);
      expect(await card(b.page, 'ready', a).count()).toBe(0);
      expect(await moved.locator('.countdown').textContent()).toMatch(/^\d+(s|m \d+s)$/);
      expect(loads).toBe(0);
      await shot(b.page, 'board');
      // The task page: facts and history.
      await moved.getByRole('link').click();
      await b.page.locator('article.task .history li', { hasText: 'task.claimed' }).waitFor(WAIT);
      expect(await b.page.locator('article.task dd.state').textContent()).toBe('claimed');
      await shot(b.page, 'task');
      expect(b.incidents).toEqual([]);
    } finally {
      await b.close();
    }
  });

  it('a hostile title renders as text, runs nothing, and loses its control characters', async () => {
    const hostile = '<img src=x onerror=alert(1)>';
    const { tasks } = await worker.ok<{ tasks: { id: string }[] }>('task_create', {
      tasks: [{ title: hostile }, { title: 'safe\u202Eevil\u0007 \u200Bname' }],
    });
    const b = await browse(t.adminKey);
    try {
      const c = card(b.page, 'ready', tasks[0]!.id);
      await c.waitFor(WAIT);
      expect(await c.locator('.title').textContent()).toBe(hostile);
      expect(await b.page.locator('img').count()).toBe(0);
      expect(await card(b.page, 'ready', tasks[1]!.id).locator('.title').textContent()).toBe('safeevil name');
      await c.getByRole('link').click();
      await b.page.locator('article.task h1').waitFor(WAIT);
      expect(await b.page.locator('article.task h1').textContent()).toBe(hostile);
      expect(await b.page.locator('img').count()).toBe(0);
      // Give an onerror handler every chance to run.
      await b.page.waitForTimeout(300);
      expect(b.incidents).toEqual([]);
    } finally {
      await b.close();
    }
  });

  it('an approval decided in the browser releases the agent blocked in approval_get', async () => {
    const { id } = await worker.ok<{ id: string }>('approval_request', { action: 'Deploy to staging', details: 'runs migration 0042', risk: 'high' });
    const waiting = worker.ok<{ approval: { status: string; reason: string | null; decided_by: string } }>('approval_get', { id, wait_ms: 60_000 });
    let settled = false;
    void waiting.then(() => (settled = true), () => (settled = true));
    const b = await browse(t.adminKey);
    try {
      await b.page.getByRole('link', { name: 'Approvals' }).click();
      const item = b.page.locator(`section[data-approval="${id}"]`);
      await item.waitFor(WAIT);
      await shot(b.page, 'approvals');
      expect(settled).toBe(false);
      await item.getByLabel(`Reason for ${id}`).fill('looks safe');
      await item.getByRole('button', { name: 'Approve' }).click();
      const out = await waiting;
      expect(out.approval.status).toBe('granted');
      expect(out.approval.reason).toBe('looks safe');
      await item.waitFor({ state: 'detached', ...WAIT });
      // Deny, with a reason: the agent gets both.
      const second = await worker.ok<{ id: string }>('approval_request', { action: 'Rotate the production keys', risk: 'critical' });
      const denied = worker.ok<{ approval: { status: string; reason: string | null } }>('approval_get', { id: second.id, wait_ms: 60_000 });
      const other = b.page.locator(`section[data-approval="${second.id}"]`);
      await other.waitFor(WAIT);
      await other.getByLabel(`Reason for ${second.id}`).fill('not during the freeze');
      await other.getByRole('button', { name: 'Deny' }).click();
      expect((await denied).approval).toMatchObject({ status: 'denied', reason: 'not during the freeze' });
      await b.page.locator('table tr', { hasText: 'not during the freeze' }).waitFor(WAIT);
      expect(b.incidents).toEqual([]);
    } finally {
      await b.close();
    }
  });

  it('a write without the CSRF token is refused, in the page and from another site', async () => {
    const b = await browse(t.adminKey);
    let attacker: Server | null = null;
    try {
      const before = (await lead.ok<{ tasks: unknown[] }>('task_list', { limit: 200 })).tasks.length;
      // Same page, cookie sent, no X-CSRF-Token: 403 csrf.
      const inPage = await b.page.evaluate(async () => {
        const r = await fetch('/api/v1/tasks', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tasks: [{ title: 'forged' }] }) });
        return { status: r.status, body: (await r.json()) as { error: { code: string } } };
      });
      expect(inPage.status).toBe(403);
      expect(inPage.body.error.code).toBe('csrf');
      // Another site (localhost is not 127.0.0.1) posts a form and a credentialed fetch at the hub.
      const hub = new URL(http.url);
      attacker = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end(
          `<form id=f method=POST action="${http.url}/api/v1/tasks" enctype="text/plain"><input name='{"tasks":[{"title":"forged","x":"' value='"}]}'></form>` +
            `<script>fetch("${http.url}/api/v1/tasks",{method:"POST",mode:"no-cors",credentials:"include",headers:{"content-type":"text/plain"},body:JSON.stringify({tasks:[{title:"forged"}]})}).finally(()=>document.getElementById("f").submit())</script>`,
        );
      });
      await new Promise<void>((ok) => attacker!.listen(0, '127.0.0.1', ok));
      const evil = `http://localhost:${(attacker.address() as AddressInfo).port}/`;
      expect(new URL(evil).host).not.toBe(hub.host);
      await b.page.goto(evil);
      await b.page.waitForURL(/\/api\/v1\/tasks/, WAIT);
      const after = (await lead.ok<{ tasks: { title: string }[] }>('task_list', { limit: 200 })).tasks;
      expect(after.length).toBe(before);
      expect(after.some((x) => x.title === 'forged')).toBe(false);
    } finally {
      await b.close();
      attacker?.close();
    }
  });

  it('a server on another port of this host gets the cookie but can do nothing with it, nor log the dashboard out', async () => {
    const b = await browse(t.adminKey);
    let other: Server | null = null;
    try {
      // Cookies are not port-scoped: a page on 127.0.0.1:<other port> (a dev server, an agent's
      // preview) is same-site, and the browser sends it the hub's cookie.
      let stolen = '';
      other = createServer((req, res) => {
        stolen ||= req.headers.cookie ?? '';
        res.writeHead(200, { 'content-type': 'text/html' });
        // It also tries to make the hub clear the cookie with credentialed no-cors requests.
        res.end(
          `<p id=done>x</p><script>Promise.allSettled([` +
            `fetch("${http.url}/metrics",{mode:"no-cors",credentials:"include"}),` +
            `fetch("${http.url}/mcp",{method:"POST",mode:"no-cors",credentials:"include",body:"{}"}),` +
            `fetch("${http.url}/api/v1/tasks",{mode:"no-cors",credentials:"include"})` +
            `]).then(()=>{document.getElementById("done").textContent="sent"})</script>`,
        );
      });
      await new Promise<void>((ok) => other!.listen(0, '127.0.0.1', ok));
      await b.page.goto(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`);
      await b.page.locator('#done', { hasText: 'sent' }).waitFor(WAIT);
      expect(stolen).toMatch(/baton_session=/);
      const cookie = /(baton_session=[^;]+)/.exec(stolen)![1]!;
      // With the cookie alone (and any Origin it likes), it reads nothing and learns no token.
      for (const path of ['/api/v1/session', '/api/v1/tasks', '/api/v1/events/stream']) {
        const r = await fetch(`${http.url}${path}`, { headers: { cookie } });
        expect(r.status, path).toBe(403);
        expect(((await r.json()) as { error: { code: string } }).error.code, path).toBe('csrf');
      }
      const mint = await fetch(`${http.url}/api/v1/tokens`, {
        method: 'POST',
        headers: { cookie, origin: http.url, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'stolen', role: 'admin' }),
      });
      expect(mint.status).toBe(403);
      // Back on the dashboard: still signed in (the cookie was not cleared), still live.
      await b.page.goto(`${http.url}/`);
      await b.page.locator('[data-testid="live"]', { hasText: 'live' }).waitFor(WAIT);
      await b.page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Board' }).waitFor(WAIT);
      expect(b.incidents).toEqual([]);
    } finally {
      await b.close();
      other?.close();
    }
  });

  it('an observer sees the board and is offered nothing it may not do; approving is refused', async () => {
    const { id } = await worker.ok<{ id: string }>('approval_request', { action: 'Drop the staging database', risk: 'critical' });
    const b = await browse(observerKey);
    try {
      const nav = b.page.getByRole('navigation', { name: 'Views' });
      await nav.getByRole('link', { name: 'Board' }).waitFor(WAIT);
      for (const hidden of ['Approvals', 'Keys', 'Audit']) expect(await nav.getByRole('link', { name: hidden }).count(), hidden).toBe(0);
      await b.page.locator('section[data-state="ready"] li').first().waitFor(WAIT);
      expect(await b.page.getByRole('button', { name: 'Add task' }).count()).toBe(0);
      await b.page.locator('section[data-state="ready"] li a').first().click();
      await b.page.locator('article.task h1').waitFor(WAIT);
      expect(await b.page.getByRole('button').filter({ hasText: /cancel/i }).count()).toBe(0);
      await b.page.goto(`${http.url}/#/approvals`);
      await b.page.getByText('Your role does not decide approvals.').waitFor(WAIT);
      await b.page.goto(`${http.url}/#/plan`);
      await b.page.locator('pre.plan').waitFor(WAIT);
      expect(await b.page.getByRole('button', { name: 'Edit plan' }).count()).toBe(0);
      // Even with a valid CSRF token, the hub refuses: hiding the button is not the control.
      const r = await b.page.evaluate(async (approval) => {
        const csrf = (globalThis as unknown as { localStorage: { getItem(k: string): string | null } }).localStorage.getItem('baton.csrf') ?? '';
        const res = await fetch(`/api/v1/approvals/${approval}/decide`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
          body: JSON.stringify({ decision: 'grant' }),
        });
        return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
      }, id);
      expect(r).toEqual({ status: 403, code: 'forbidden' });
      const still = await lead.ok<{ approval: { status: string } }>('approval_get', { id });
      expect(still.approval.status).toBe('pending');
    } finally {
      await b.close();
    }
  });

  it('views: agents, messages, locks, sessions, audit, keys (shown once, revocable), plan (editable by a lead or admin); dark mode', async () => {
    await lead.ok('task_create', { tasks: [{ title: 'Document the export format', labels: ['docs'] }] });
    await worker.ok('session_start', { goal: 'export feature' });
    await worker.ok('lock_acquire', { paths: ['src/export/csv.ts'], reason: 'exporter' });
    const first = await worker.ok<{ id: string }>('message_send', { to_all: true, subject: 'Exporter design', body: 'Streaming rows, 64 KB chunks.\n<script>alert(2)</script>' });
    await lead.ok('message_send', { to_all: true, reply_to: first.id, body: 'Sounds good.' });
    await worker.ok('session_checkpoint', { summary: 'format agreed' });
    await lead.ok('plan_update', { goal: 'Ship invoice export', body: '1. format\n2. exporter\n3. deploy' });
    const b = await browse(t.adminKey);
    try {
      const go = async (name: string): Promise<void> => {
        await b.page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name, exact: true }).click();
      };
      await go('Agents');
      await b.page.locator('tr[data-agent="ada"] td', { hasText: 'src/export/csv.ts' }).waitFor(WAIT);
      await shot(b.page, 'agents');
      await go('Messages');
      await b.page.locator('.thread', { hasText: 'Exporter design' }).locator('.message').nth(1).waitFor(WAIT);
      expect(await b.page.locator('.thread .message pre', { hasText: '<script>alert(2)</script>' }).count()).toBe(1);
      await shot(b.page, 'messages');
      await go('Locks');
      const lockRow = b.page.locator('tr', { hasText: 'src/export/csv.ts' });
      await lockRow.waitFor(WAIT);
      await shot(b.page, 'locks');
      await lockRow.getByRole('button', { name: 'Force release' }).click();
      await b.page.getByText('No locks held.').waitFor(WAIT);
      expect((await lead.ok<{ locks: unknown[] }>('lock_list')).locks).toEqual([]);
      await go('Sessions');
      await b.page.locator('.history li', { hasText: 'checkpoint' }).waitFor(WAIT);
      const verifies: string[] = [];
      b.page.on('request', (r) => {
        if (new URL(r.url()).pathname === '/api/v1/audit/verify') verifies.push(r.url());
      });
      await go('Audit');
      await b.page.locator('[data-testid="chain"]', { hasText: 'Chain intact' }).waitFor(WAIT);
      // Live events refresh the rows, not the chain walk (every audit row): that runs on opening and on request.
      const tasks = await lead.ok<{ tasks: { id: string }[] }>('task_create', { tasks: [{ title: 'audited while the view is open' }] });
      await b.page.locator('tr', { hasText: tasks.tasks[0]!.id }).first().waitFor(WAIT);
      expect(verifies).toHaveLength(1);
      await b.page.getByRole('button', { name: 'Verify again' }).click();
      await expect.poll(() => verifies.length).toBe(2);
      await shot(b.page, 'audit');
      await go('Plan');
      await b.page.locator('pre.plan', { hasText: 'exporter' }).waitFor(WAIT);
      await b.page.getByRole('button', { name: 'Edit plan' }).click();
      await b.page.getByLabel('Goal').fill('Ship invoice export by Friday');
      await b.page.getByRole('button', { name: 'Save' }).click();
      await b.page.getByRole('heading', { name: 'Ship invoice export by Friday' }).waitFor(WAIT);
      expect((await lead.ok<{ plan: { goal: string } }>('plan_get')).plan.goal).toBe('Ship invoice export by Friday');
      await go('Board');
      await b.page.locator('section[data-state="ready"] li a', { hasText: 'Document the export format' }).click();
      await b.page.getByRole('button', { name: 'Cancel task' }).click();
      await b.page.locator('article.task dd.state', { hasText: 'cancelled' }).waitFor(WAIT);
      expect(await b.page.getByRole('button', { name: 'Cancel task' }).count()).toBe(0);
      await go('Keys');
      await b.page.getByLabel('Agent name').fill('newbie');
      await b.page.getByLabel('Role').selectOption('observer');
      await b.page.getByRole('button', { name: 'Create key' }).click();
      const key = (await b.page.locator('[data-testid="new-key"]').textContent(WAIT)) ?? '';
      expect(key).toMatch(/^bat_/);
      const row = b.page.locator('tr', { hasText: 'newbie' });
      await row.waitFor(WAIT);
      await shot(b.page, 'keys');
      await b.page.getByRole('button', { name: 'Done' }).click();
      expect(await b.page.locator('[data-testid="new-key"]').count()).toBe(0);
      expect(await b.page.content()).not.toContain(key);
      await row.getByRole('button', { name: 'Revoke' }).click();
      await row.locator('td', { hasText: 'revoked' }).waitFor(WAIT);
      expect(b.incidents).toEqual([]);
    } finally {
      await b.close();
    }
    const dark = await browse(t.adminKey, 'dark');
    try {
      await dark.page.locator('section[data-state] li').first().waitFor(WAIT);
      const bg = await dark.page.evaluate<string>('getComputedStyle(document.body).backgroundColor');
      expect(bg).toBe('rgb(21, 23, 26)');
      await shot(dark.page, 'board-dark');
    } finally {
      await dark.close();
    }
  });

  it('is keyboard usable: sign in, move between views and open a task without a mouse', async () => {
    await lead.ok('task_create', { tasks: [{ title: 'Reachable by keyboard' }] });
    const b = await openBrowser();
    try {
      await b.page.goto(`${http.url}/`);
      await b.page.getByLabel('API key').focus();
      await b.page.keyboard.type(t.adminKey);
      await b.page.keyboard.press('Enter');
      const nav = b.page.getByRole('navigation', { name: 'Views' });
      await nav.waitFor(WAIT);
      await nav.getByRole('link', { name: 'Agents' }).focus();
      await b.page.keyboard.press('Enter');
      await b.page.getByRole('heading', { name: 'Agents' }).waitFor(WAIT);
      await nav.getByRole('link', { name: 'Board' }).focus();
      await b.page.keyboard.press('Enter');
      const link = b.page.locator('section[data-state="ready"] li a').first();
      await link.waitFor(WAIT);
      await link.focus();
      await b.page.keyboard.press('Enter');
      await b.page.locator('article.task h1').waitFor(WAIT);
    } finally {
      await b.close();
    }
  });
});

describe.skipIf(!HAVE_CHROMIUM)('dashboard: revocation and hub restart', () => {
  it('a page whose key is revoked goes back to the login form', async () => {
    const t = await openHub();
    const http = await serve(t.hub);
    const b = await openBrowser();
    try {
      const key = await createKey(t, 'temp-lead', 'lead');
      await signIn(b.page, `${http.url}/`, key);
      await b.page.locator('[data-testid="live"]', { hasText: 'live' }).waitFor(WAIT);
      const tokens = (await t.hub.call('token_list', {}, t.admin, { requestId: 'req_revoke1', transport: 'internal' })) as { tokens: { id: string; name: string }[] };
      const id = tokens.tokens.find((x) => x.name === 'temp-lead')!.id;
      await t.hub.call('token_revoke', { id }, t.admin, { requestId: 'req_revoke2', transport: 'internal' });
      // The next thing the page does with its session (a refetch on this event, or the stream's
      // own re-check of the key) meets a 401, and the page signs out.
      await t.hub.call('task_create', { tasks: [{ title: 'after the revocation' }] }, t.admin, { requestId: 'req_revoke3', transport: 'internal' });
      await b.page.getByLabel('API key').waitFor(WAIT);
      expect(await b.page.getByRole('navigation', { name: 'Views' }).count()).toBe(0);
    } finally {
      await b.close();
      await http.close();
      await t.close();
    }
  });

  it('the page reconnects and follows again after the hub restarts on the same data dir', async () => {
    const tmp = tempDir();
    const t = await openHub({ dir: tmp.dir });
    let http = await serve(t.hub);
    const port = Number(new URL(http.url).port);
    const workerKey = await createKey(t, 'ada', 'worker');
    let hub: Hub = t.hub;
    const b = await openBrowser();
    try {
      await signIn(b.page, `${http.url}/`, t.adminKey);
      const live = b.page.locator('[data-testid="live"]');
      await live.filter({ hasText: 'live' }).waitFor(WAIT);
      const before = await httpAgent('v2', http.url, workerKey);
      const seen = (await before.ok<{ tasks: { id: string }[] }>('task_create', { tasks: [{ title: 'before the restart' }] })).tasks[0]!.id;
      await before.close();
      await card(b.page, 'ready', seen).waitFor(WAIT);
      let loads = 0;
      b.page.on('load', () => loads++);
      const streams: string[] = [];
      b.page.on('request', (r) => {
        if (r.url().includes('/api/v1/events/stream')) streams.push(r.url());
      });
      // A graceful stop (what SIGTERM does): long polls and streams end now.
      await http.drain(2_000);
      await t.hub.close();
      await live.filter({ hasText: 'reconnecting' }).waitFor(WAIT);
      hub = await Hub.open(testConfig(resolve(tmp.dir, 'data')), { log: pino({ level: 'silent' }) });
      http = await startHttp(hub, { host: '127.0.0.1', port });
      await live.filter({ hasText: 'live' }).waitFor(WAIT);
      const worker = await httpAgent('v2', http.url, workerKey);
      try {
        const { tasks } = await worker.ok<{ tasks: { id: string }[] }>('task_create', { tasks: [{ title: 'after the restart' }] });
        await card(b.page, 'ready', tasks[0]!.id).waitFor(WAIT);
        await worker.ok('task_claim', { id: tasks[0]!.id });
        await card(b.page, 'claimed', tasks[0]!.id).waitFor(WAIT);
      } finally {
        await worker.close();
      }
      expect(loads).toBe(0);
      // It resumed from its last event id rather than starting over from "now".
      expect(streams.some((u) => /\/api\/v1\/events\/stream\?csrf=[A-Za-z0-9_-]+&after=[A-Za-z0-9_-]+/.test(u))).toBe(true);
    } finally {
      await b.close();
      await http.close();
      await hub.close();
      tmp.cleanup();
    }
  });
});
