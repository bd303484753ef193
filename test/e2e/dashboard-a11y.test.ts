/**
 * The dashboard is usable: driven from the keyboard alone, every control labelled, readable in a
 * narrow window without the page scrolling sideways, and addresses copied to the clipboard.
 * Real headless Chromium against a real `vipdip up --demo`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import {
  launchBrowser,
  screenshot,
  signIn,
  UI_TIMEOUT_MS,
  waitLive,
  type TestBrowser,
} from '../support/browser.ts';
import { call, startServer, type TestServer } from '../support/server.ts';

let srv: TestServer;
let wide: TestBrowser;
let narrow: TestBrowser;

const PAGES = [
  '/',
  '/services/shop',
  '/services/shop/vms/web1',
  '/subscriptions/contoso/vnets/shop-net',
  '/events',
];

before(async () => {
  srv = await startServer({ args: ['--demo', '--seed', '23'] });
  wide = await launchBrowser({ permissions: ['clipboard-read', 'clipboard-write'] });
  narrow = await launchBrowser({ viewport: { width: 390, height: 844 } });
});

after(async () => {
  await wide?.close();
  await narrow?.close();
  await srv?.stop();
});

/**
 * The page's heading is drawn and nothing on it is still loading. The predicates of waitForFunction
 * are given as function expressions: Playwright evaluates a plain expression again with eval() at
 * every poll, which the dashboard's CSP (no 'unsafe-eval') refuses once the first check fails, but
 * evaluates a function's source once, inside its own call, and then calls it.
 */
async function settled(page: Page): Promise<void> {
  await page.locator('main h1').waitFor();
  await page.waitForFunction(
    `() => ![...document.querySelectorAll('[role="status"]')].some((e) => e.textContent.startsWith('Loading'))`,
  );
}

/** What the focused element is called: its aria-label, or its text. */
const focused = (page: Page) =>
  page.evaluate<string>(
    `(document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.textContent ?? '').trim()`,
  );

/** Presses Tab until the focus is on an element of that name; fails after `limit` presses. */
async function tabTo(page: Page, name: string, limit = 80): Promise<void> {
  const seen: string[] = [];
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    if (f === name) return;
    seen.push(f);
  }
  assert.fail(`Tab never reached ${name}; it went through: ${seen.join(' | ')}`);
}

/** The interactive elements of the page that have no accessible name. */
const unnamed = (page: Page) =>
  page.evaluate<string[]>(`(() => {
    const nameOf = (el) => {
      const by = el.getAttribute('aria-labelledby');
      if (by) return by.split(' ').map((id) => document.getElementById(id)?.textContent ?? '').join(' ');
      if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
      if (el.labels && el.labels.length > 0) return [...el.labels].map((l) => l.textContent).join(' ');
      return el.textContent || el.getAttribute('title') || el.getAttribute('placeholder') || '';
    };
    return [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex="0"]')]
      .filter((el) => nameOf(el).trim() === '')
      .map((el) => el.outerHTML.slice(0, 120));
  })()`);

describe('the dashboard, for everyone', () => {
  test('works from the keyboard alone: sign in, follow a link, cancel and confirm an action', async () => {
    const page = await wide.newPage();
    await page.goto(`${srv.url}/`);
    // The token field has the focus once the page is drawn; Enter submits.
    await page.waitForFunction(`() => document.activeElement?.id === 'token'`);
    await page.keyboard.type(srv.operatorToken);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    await waitLive(page);
    // The first Tab offers to skip the navigation.
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'Skip to content');
    await tabTo(page, 'shop');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Cloud service shop' }).waitFor();
    // After a navigation the focus is on the new page, so Tab goes on from there.
    assert.equal(await page.evaluate<string>('document.activeElement.id'), 'main');
    await tabTo(page, 'Stop shop/web3');
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Stop shop/web3?' });
    await dialog.waitFor();
    assert.equal(await focused(page), 'Stop', 'the confirm button has the focus');
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await focused(page), 'Stop shop/web3', 'the focus is back on the button that opened it');
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    await page.keyboard.press('Enter');
    await page.getByTestId('vm-row-web3').getByText('stopped', { exact: true }).waitFor();
    const vm = (await call(srv, srv.operatorToken, 'GET', '/v1/services/shop/vms/web3')).body as {
      state: string;
    };
    assert.equal(vm.state, 'stopped');
    await page.close();
  });

  test('every link, button and field of every page has a name', async () => {
    const page = await wide.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    for (const path of PAGES) {
      await page.goto(`${srv.url}${path}`);
      await settled(page);
      assert.deepEqual(await unnamed(page), [], `unnamed controls on ${path}`);
    }
    await page.close();
  });

  test('in a narrow window no page scrolls sideways; wide tables scroll in their own box', async () => {
    const page = await narrow.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    for (const path of PAGES) {
      await page.goto(`${srv.url}${path}`);
      await settled(page);
      const [scroll, width, culprits] = await page.evaluate<[number, number, string[]]>(`[
        document.documentElement.scrollWidth,
        window.innerWidth,
        [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
          .map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
          .slice(0, 8),
      ]`);
      assert.ok(
        scroll <= width,
        `${path} is ${scroll} px wide in a ${width} px window: ${culprits.join(', ')}`,
      );
    }
    await page.goto(`${srv.url}/`);
    await page.getByTestId('vip-shop').waitFor();
    await screenshot(page, 'dashboard-narrow-overview');
    await page.goto(`${srv.url}/services/shop`);
    await page.getByTestId('dip-web1').waitFor();
    await screenshot(page, 'dashboard-narrow-service');
    await page.close();
  });

  test('an address is copied to the clipboard with its copy button', async () => {
    const page = await wide.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/shop/vms/web1`);
    const dip = (await page.getByTestId('vm-dip').innerText({ timeout: UI_TIMEOUT_MS })).trim();
    assert.match(dip, /^127\.16\.1\.\d+$/);
    await page.getByRole('button', { name: `Copy ${dip}` }).click();
    await page
      .getByRole('status')
      .filter({ hasText: `copied ${dip}` })
      .waitFor();
    assert.equal(await page.evaluate<string>('navigator.clipboard.readText()'), dip);
    await page.close();
  });
});
