/**
 * Chaos on the dashboard, in real headless Chromium against a real `vipdip up --demo`: a running run
 * shows in a banner (what, since when, the next step), the events it caused are marked in the
 * timeline, and its Stop button ends it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ChaosRunView } from '../../src/chaos/index.ts';
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
let browser: TestBrowser;

before(async () => {
  srv = await startServer({ args: ['--demo', '--seed', '5'] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

describe('chaos on the dashboard', () => {
  test('a running chaos run shows in a banner with its next step, its events are marked, and Stop ends it', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await waitLive(page);
    assert.equal(await page.getByTestId('chaos-banner').count(), 0, 'no banner without a run');

    const r = await call(srv, srv.operatorToken, 'POST', '/v1/chaos', {
      subscription: 'contoso',
      seed: 4,
      rates: { redeploy: 60 },
      durationMs: 600_000,
    });
    assert.equal(r.status, 201, r.text);
    const run = r.body as ChaosRunView;

    const banner = page.getByTestId(`chaos-run-${run.id}`);
    await banner.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match(
      await banner.innerText(),
      new RegExp(`Chaos run ${run.id} over subscription contoso: running since`),
    );
    assert.match(await banner.innerText(), /redeploy 60\/min/);
    assert.match(
      await page.getByTestId(`chaos-next-${run.id}`).innerText(),
      /Next: redeploy contoso\/(shop|api)\/\w+ (in \d+s|due now)/,
    );

    // The timeline marks what the run did.
    await page.getByRole('link', { name: 'Events' }).click();
    await page.getByRole('heading', { name: 'Events', level: 1 }).waitFor();
    const marked = page.locator('[data-testid="timeline"] tr', { has: page.locator('.chaos-badge') });
    await marked.first().waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match(await marked.first().innerText(), new RegExp(`chaos run ${run.id}: redeploy`));
    const unmarked = page.locator('[data-testid="timeline"] tbody tr', { hasNotText: 'chaos run' });
    assert.ok((await unmarked.count()) > 0, 'the demo’s own events are there too');
    assert.equal(await unmarked.locator('.chaos-badge').count(), 0, 'and they are not marked');
    await screenshot(page, 'dashboard-chaos');

    await page.getByRole('button', { name: `Stop chaos run ${run.id}` }).click();
    await banner.waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS });
    const end = await call(srv, srv.operatorToken, 'GET', `/v1/chaos/${run.id}`);
    assert.equal((end.body as ChaosRunView).state, 'stopped');
    await page.close();
  });
});
