/**
 * The dashboard's live stream survives a restart of `vipdip up`: while the server is down the page
 * says it is reconnecting; the state changes meanwhile (another process deallocates a VM); when
 * the server is back on the same address, the page reconnects with Last-Event-ID set to the last
 * event it saw, receives exactly what it missed, and shows the change, all without a reload.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Request } from 'playwright-core';
import { openState } from '../../src/main.ts';
import {
  assertNotReloaded,
  launchBrowser,
  markPage,
  screenshot,
  signIn,
  UI_TIMEOUT_MS,
  waitLive,
  type TestBrowser,
} from '../support/browser.ts';
import { call, startServer, type TestServer } from '../support/server.ts';

let dir: string;
let port: number;
let srv: TestServer | undefined;
let browser: TestBrowser;

/** A port free on loopback now, for a server that must come back on the same address. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const start = () => startServer({ dir, args: ['--demo', '--seed', '5', '--listen', `127.0.0.1:${port}`] });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vipdip-restart-'));
  port = await freePort();
  srv = await start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('after a server restart the page resumes from the last event it saw and shows what changed meanwhile', async () => {
  const token = srv!.operatorToken;
  const page = await browser.newPage();
  const streams: { lastEventId: string | undefined; at: number }[] = [];
  page.on('request', (r: Request) => {
    if (new URL(r.url()).pathname === '/v1/events/stream')
      streams.push({ lastEventId: r.headers()['last-event-id'], at: Date.now() });
  });
  await signIn(page, srv!.url, token);
  await page.goto(`${srv!.url}/services/shop`);
  await page.getByRole('heading', { name: 'Cloud service shop' }).waitFor();
  await waitLive(page);
  await markPage(page);
  const dip = (await page.getByTestId('dip-web2').innerText()).trim();
  assert.match(dip, /^127\.16\.1\.\d+$/);
  // A change while connected moves the page's position in the log; once the page shows it, the
  // page has had its event, the newest of the log.
  const stopped = await call(srv!, token, 'POST', '/v1/services/shop/vms/web3/stop');
  assert.equal(stopped.status, 200, stopped.text);
  await page.getByTestId('vm-row-web3').getByText('stopped', { exact: true }).waitFor();
  const head = (
    (await call(srv!, token, 'GET', '/v1/events?order=desc&limit=1')).body as {
      events: { seq: number; type: string }[];
    }
  ).events[0]!;
  assert.equal(head.type, 'vm.stopped');
  const before = streams.length;
  assert.ok(before >= 1, 'the page opened the stream');

  // Down: the page says so.
  assert.equal(await srv!.stop({ keep: true }), 0);
  srv = undefined;
  await page.locator('[data-testid="live-status"][data-status="reconnecting"]').waitFor();

  // Meanwhile another process changes the state: web2 is deallocated, its DIP released.
  const state = await openState({ stateDir: join(dir, '.vipdip') });
  try {
    await state.cloud.vmOperation(
      { service: 'shop', vm: 'web2' },
      'deallocate',
      'deallocated while the server was down',
    );
  } finally {
    await state.close();
  }

  srv = await start();
  await waitLive(page);
  const deadline = Date.now() + UI_TIMEOUT_MS;
  while ((await page.getByTestId('dip-web2').innerText()).trim() !== 'no DIP') {
    assert.ok(Date.now() < deadline, 'the page shows web2 deallocated after the restart');
    await page.waitForTimeout(50);
  }
  await assertNotReloaded(page);

  // The stream was reopened from where the page was: the last event seen before the restart.
  const reconnects = streams.slice(before);
  assert.ok(reconnects.length >= 1, 'the page reconnected');
  for (const r of reconnects)
    assert.equal(r.lastEventId, String(head.seq), 'every reconnect resumes from the last event seen');
  const vip = (await page.getByTestId('vip').innerText()).trim();
  assert.match(vip, /^127\.100\.\d+\.\d+$/, 'the reserved VIP of shop stays');
  await screenshot(page, 'dashboard-after-restart');

  // The history on the VM's page lists the change with the reason given while the server was down.
  await page.getByRole('link', { name: 'web2', exact: true }).click();
  const row = page
    .getByTestId('address-history')
    .getByRole('row')
    .filter({ hasText: `DIP ${dip} → —` });
  await row.waitFor();
  assert.match(await row.innerText(), /deallocated while the server was down/);
  await page.close();
});
