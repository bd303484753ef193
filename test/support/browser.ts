/**
 * Real headless Chromium for the dashboard's end-to-end tests: Debian's `chromium` (installed by
 * .ci/run), driven by playwright-core, with a fresh profile per browser. A missing Chromium fails
 * the test run loudly: the tests are never skipped.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
/** Where screenshots go, for a person to look at (ignored by git). */
export const RESULTS_DIR = resolve(import.meta.dirname, '../../test-results');
/** Generous: "within a second" is the product's promise; the tests allow for a loaded 2-core machine. */
export const UI_TIMEOUT_MS = 15_000;

export interface TestBrowser {
  context: BrowserContext;
  /** A new tab: its sessionStorage starts empty, so each one signs in afresh. */
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export async function launchBrowser(
  opts: { viewport?: { width: number; height: number }; permissions?: string[] } = {},
): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the dashboard tests need Debian's chromium (apt-get install chromium; .ci/run does it)`,
    );
  }
  const profile = mkdtempSync(join(tmpdir(), 'vipdip-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: opts.viewport ?? { width: 1280, height: 860 },
      timeout: 60_000,
      ...(opts.permissions ? { permissions: opts.permissions } : {}),
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw e;
  }
  context.setDefaultTimeout(UI_TIMEOUT_MS);
  const errors: string[] = [];
  return {
    context,
    newPage: async () => {
      const page = await context.newPage();
      page.on('pageerror', (e) => errors.push(e.message));
      return page;
    },
    close: async () => {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
      if (errors.length > 0) throw new Error(`the page threw: ${errors.join('\n')}`);
    },
  };
}

/** Signs in through the form, as a person would, and waits for the overview. */
export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
}

/** Waits for the live stream to be connected (the indicator says "live"). */
export async function waitLive(page: Page): Promise<void> {
  await page.locator('[data-testid="live-status"][data-status="live"]').waitFor();
}

/** Saves a full-page screenshot as test-results/NAME.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

// Code that runs in the page is given as text: the tests' own compiler knows no DOM, and would wrap
// functions in helpers that the page does not have.

/** Marks the page's window, so that assertNotReloaded can prove later that it was never reloaded. */
export async function markPage(page: Page): Promise<void> {
  await page.evaluate('window.vipdipMark = "not reloaded"');
}

export async function assertNotReloaded(page: Page): Promise<void> {
  const m = await page.evaluate<unknown>('window.vipdipMark');
  if (m !== 'not reloaded') throw new Error('the page was reloaded');
}
