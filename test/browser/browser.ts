import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium (apt-get install chromium); never a browser download. */
export const CHROMIUM = process.env.BATON_CHROMIUM ?? '/usr/bin/chromium';
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) {
  console.warn(`\n*** BROWSER TESTS SKIPPED: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set BATON_CHROMIUM) ***\n`);
}

/** The hub serves dist/web: build it (as `npm run build` does) when a test runs without a build. */
export function ensureDashboardBuilt(): void {
  const root = resolve(import.meta.dirname, '../..');
  if (!existsSync(join(root, 'dist/web/index.html'))) execFileSync(process.execPath, [join(root, 'scripts/build-web.mjs')], { stdio: 'pipe' });
}

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Script errors and dialogs seen on any page: a hostile title must cause neither. */
  incidents: string[];
  close(): Promise<void>;
}

/** A fresh profile (its own user-data-dir) per browser: no cookie or cache carries over between tests. */
export async function openBrowser(options: { colorScheme?: 'light' | 'dark' } = {}): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'baton-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1400, height: 900 },
    colorScheme: options.colorScheme ?? 'light',
  });
  const incidents: string[] = [];
  const watch = (page: Page): void => {
    page.on('pageerror', (e) => incidents.push(`pageerror: ${e.message}`));
    page.on('dialog', (d) => {
      incidents.push(`dialog: ${d.type()} ${d.message()}`);
      void d.dismiss();
    });
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text())) incidents.push(`csp: ${m.text()}`);
    });
  };
  context.on('page', watch);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  return {
    context,
    page,
    incidents,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Signs in through the login form. */
export async function signIn(page: Page, url: string, key: string): Promise<void> {
  await page.goto(url);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Views' }).waitFor();
}
