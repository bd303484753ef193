/**
 * The dashboard end to end: real headless Chromium against a real `vipdip up --demo` on a random
 * port with a temporary state. Every change the tests make through the UI or the CLI is checked
 * in the page without a reload (the page's own marker survives), and each test saves a screenshot
 * under test-results/.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { after, before, describe, test } from 'node:test';
import type { Page, Request } from 'playwright-core';
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
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

interface Vm {
  service: string;
  name: string;
  state: string;
  dip: string | null;
  staticDip: string | null;
}
interface Service {
  name: string;
  subscription: string;
  vip: string | null;
}
interface Event {
  seq: number;
  time: string;
  type: string;
  resource: string;
  reason: string;
  new: Record<string, unknown> | null;
}

/** The product's promise for a change made elsewhere to show up; the assertion allows a loaded machine. */
const PROMISE_MS = 1000;
const CLI_TIMEOUT_MS = 30_000;

let srv: TestServer;
let browser: TestBrowser;

const api = async <T>(
  method: string,
  path: string,
  body?: unknown,
  token = srv.operatorToken,
): Promise<T> => {
  const r = await call(srv, token, method, path, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
  return r.body as T;
};

function cli(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string; exitedAt: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: tmpdir(),
      env: { ...process.env, VIPDIP_URL: srv.url, VIPDIP_TOKEN: srv.operatorToken },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: CLI_TIMEOUT_MS,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, exitedAt: Date.now() }));
  });
}

const text = async (page: Page, testId: string) => (await page.getByTestId(testId).innerText()).trim();

async function waitText(page: Page, testId: string, want: string | RegExp): Promise<void> {
  const loc = page.getByTestId(testId);
  const deadline = Date.now() + UI_TIMEOUT_MS;
  for (;;) {
    const got = (await loc.innerText().catch(() => '')).trim();
    if (typeof want === 'string' ? got === want : want.test(got)) return;
    if (Date.now() > deadline) assert.fail(`${testId} shows ${JSON.stringify(got)}, not ${String(want)}`);
    await page.waitForTimeout(50);
  }
}

before(async () => {
  srv = await startServer({ args: ['--demo', '--seed', '11'] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

describe('the dashboard', () => {
  test('signing in shows every demo service with its VIP, and each VM with its DIP', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await waitLive(page);
    const services = await api<Service[]>('GET', '/v1/services');
    const vms = await api<Vm[]>('GET', '/v1/vms');
    assert.deepEqual(
      services.map((s) => s.name),
      ['api', 'blog', 'shop'],
    );
    for (const s of services) {
      assert.ok(s.vip !== null, `${s.name} has a VIP in the demo`);
      await waitText(page, `vip-${s.name}`, s.vip);
    }
    assert.equal(vms.length, 7);
    for (const v of vms) await waitText(page, `dip-${v.service}-${v.name}`, v.dip!);
    assert.equal(await text(page, 'identity'), 'operator');
    await screenshot(page, 'dashboard-overview');

    // The service page lists the same VMs with both addresses.
    await page.getByRole('link', { name: 'shop', exact: true }).click();
    await page.getByRole('heading', { name: 'Cloud service shop' }).waitFor();
    await waitText(page, 'vip', services.find((s) => s.name === 'shop')!.vip!);
    for (const v of vms.filter((x) => x.service === 'shop')) await waitText(page, `dip-${v.name}`, v.dip!);
    // Each backend's health, as the data plane reports it; without a data plane, said plainly.
    const health = await call(srv, srv.operatorToken, 'GET', '/v1/services/shop/health');
    if (health.status === 404) {
      await waitText(page, 'health-unknown', /^Health unknown — no data plane/);
    } else {
      assert.equal(health.status, 200, health.text);
      const h = health.body as { endpoints: { name: string; backends: { vm: string; state: string }[] }[] };
      for (const e of h.endpoints)
        for (const b of e.backends) await waitText(page, `health-${e.name}-${b.vm}`, new RegExp(b.state));
    }
    await screenshot(page, 'dashboard-service');
    await page.close();
  });

  test('deallocating every VM of a service from the UI removes each DIP, then the VIP, live', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/blog`);
    await page.getByRole('heading', { name: 'Cloud service blog' }).waitFor();
    await waitLive(page);
    await markPage(page);
    const vip = (await api<Service>('GET', '/v1/services/blog')).vip!;
    await waitText(page, 'vip', vip);
    const vms = ['www1', 'www2'];
    for (const [i, name] of vms.entries()) {
      await page.getByRole('button', { name: `Deallocate blog/${name}`, exact: true }).click();
      const dialog = page.getByRole('dialog', { name: `Deallocate blog/${name}?` });
      await dialog.waitFor();
      const last = i === vms.length - 1;
      // The confirmation says what goes: the DIP, and with the last VM the VIP.
      assert.match(
        await dialog.innerText(),
        last ? new RegExp(`the VIP ${vip} goes back`) : /releases its DIP/,
      );
      await dialog.getByRole('button', { name: 'Deallocate' }).click();
      await waitText(page, `dip-${name}`, 'no DIP');
      await waitText(page, 'vip', last ? 'no VIP — released' : vip);
    }
    await assertNotReloaded(page);
    for (const v of await api<Vm[]>('GET', '/v1/services/blog/vms')) {
      assert.deepEqual([v.state, v.dip], ['deallocated', null], `${v.name} is deallocated in the API too`);
    }
    assert.equal((await api<Service>('GET', '/v1/services/blog')).vip, null);
    await screenshot(page, 'dashboard-deallocated');

    // The overview, reached by a link (no reload), says the same.
    await page.getByRole('link', { name: 'Overview' }).first().click();
    await waitText(page, 'vip-blog', 'no VIP — released');
    await waitText(page, 'dip-blog-www1', 'no DIP');
    await assertNotReloaded(page);
    await page.close();
  });

  test('a VM started from the CLI (another process) shows its new DIP and a new VIP without reload, and its history lists the change with its reason', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/blog/vms/www1`);
    await page.getByRole('heading', { name: /VM blog\/www1/ }).waitFor();
    // The image it runs (the demo gives www1 the built-in whoami).
    await waitText(page, 'vm-image', 'whoami');
    await waitLive(page);
    await markPage(page);
    await waitText(page, 'vm-dip', 'no DIP');
    await waitText(page, 'vm-vip', 'no VIP — released');
    // When the DIP appears in the page, by the page's own clock (the machine's, as the server's).
    // (A string, not a function: the test's own compiler would wrap a function in helpers the page lacks.)
    await page.evaluate(`new MutationObserver(() => {
      const t = document.querySelector('[data-testid="vm-dip"]')?.textContent ?? '';
      if (window.dipShownAt === undefined && /\\d+\\.\\d+\\.\\d+\\.\\d+/.test(t)) window.dipShownAt = Date.now();
    }).observe(document.body, { subtree: true, childList: true, characterData: true })`);

    const run = await cli(['vm', 'start', 'blog/www1']);
    assert.equal(run.code, 0, run.stderr);
    const m = /^blog\/www1 running dip (\S+) vip (\S+) host (\S+)$/m.exec(run.stdout);
    assert.ok(m, `the CLI says the new addresses: ${run.stdout}`);
    const [, dip, vip] = m as unknown as [string, string, string];
    await waitText(page, 'vm-dip', dip);
    await waitText(page, 'vm-vip', vip);
    await assertNotReloaded(page);

    const events = (
      await api<{ events: Event[] }>('GET', '/v1/events?order=desc&limit=50&resource=vm/blog/www1')
    ).events;
    const dipEvent = events.find((e) => e.type === 'vm.dip' && e.new?.dip === dip)!;
    const shownAt = await page.evaluate<number | undefined>('window.dipShownAt');
    assert.ok(shownAt !== undefined);
    const sinceCommit = shownAt - Date.parse(dipEvent.time);
    const sinceCli = shownAt - run.exitedAt;
    console.log(
      `# CLI start → dashboard: the DIP showed ${sinceCommit} ms after the change was committed ` +
        `(${sinceCli < 0 ? `${-sinceCli} ms before the CLI process had exited` : `${sinceCli} ms after the CLI process exited`}); ` +
        `the product promises ${PROMISE_MS} ms, the test allows ${UI_TIMEOUT_MS} ms for a loaded machine`,
    );
    assert.ok(sinceCommit < UI_TIMEOUT_MS, `the DIP showed ${sinceCommit} ms after the commit`);

    // The history: the DIP drawn, the VIP given back to the service, each with its reason.
    const history = page.getByTestId('address-history');
    const dipRow = history.getByRole('row').filter({ hasText: `DIP — → ${dip}` });
    await dipRow.waitFor();
    assert.match(await dipRow.innerText(), /\bstart\b/);
    const vipRow = history.getByRole('row').filter({ hasText: `VIP — → ${vip}` });
    await vipRow.waitFor();
    assert.match(await vipRow.innerText(), /first VM allocated \(start\)/);
    // And the earlier release, with its reason, further down.
    const released = history
      .getByRole('row')
      .filter({ hasText: /DIP \d+\.\d+\.\d+\.\d+ → —/ })
      .first();
    assert.match(await released.innerText(), /deallocate/);
    // The workload's state and last lines; without a data plane, said plainly.
    const logs = await call(srv, srv.operatorToken, 'GET', '/v1/services/blog/vms/www1/logs');
    if (logs.status === 404) await waitText(page, 'no-logs', /^No workload logs/);
    else {
      assert.equal(logs.status, 200, logs.text);
      const status = (logs.body as { status: string }).status;
      await page
        .getByRole('region', { name: 'Workload' })
        .getByText(status, { exact: true })
        .first()
        .waitFor();
    }
    await screenshot(page, 'dashboard-vm-history');
    await page.close();
  });

  test("a subscription token sees its own subscription's services and nothing of another's", async () => {
    const { token } = await api<{ token: string }>('POST', '/v1/subscriptions/fabrikam/tokens', {
      name: 'e2e',
    });
    const page = await browser.newPage();
    const asked: string[] = [];
    page.on('request', (r: Request) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/v1/')) asked.push(u.pathname);
    });
    await signIn(page, srv.url, token);
    await waitLive(page);
    assert.equal(await text(page, 'identity'), 'subscription fabrikam');
    await page.getByTestId('service-row-blog').waitFor();
    await page.getByTestId('subscription-fabrikam').waitFor();
    for (const other of ['shop', 'api'])
      assert.equal(await page.getByTestId(`service-row-${other}`).count(), 0, other);
    assert.equal(await page.getByTestId('subscription-contoso').count(), 0);
    // Per-subnet utilisation instead of the public pools, and no host list.
    await page.getByText('blog-net/web').waitFor();
    const body = await page.locator('main').innerText();
    for (const word of ['contoso', 'shop-net', '127.16.'])
      assert.ok(!body.includes(word), `the page shows ${word}`);
    assert.equal(await page.getByRole('heading', { name: 'Public pools' }).count(), 0);
    assert.equal(await page.getByRole('heading', { name: 'Hosts' }).count(), 0);
    const operatorOnly = asked.filter((p) => /^\/v1\/(pools|hosts|tokens)/.test(p));
    assert.deepEqual(operatorOnly, [], 'the dashboard never asks a tenant for operator-only routes');
    await screenshot(page, 'dashboard-tenant');

    // Another subscription's service is as if it did not exist.
    await page.goto(`${srv.url}/services/shop`);
    const problem = page.getByRole('alert').filter({ hasText: 'cloud service shop' });
    await problem.waitFor();
    assert.match(await problem.innerText(), /not found/);
    await page.close();
  });

  test("an error from the API is shown with the problem's title and detail: a start into a full subnet", async () => {
    await api('POST', '/v1/subscriptions', { name: 'tiny' });
    await api('POST', '/v1/subscriptions/tiny/vnets', {
      name: 'tiny-net',
      addressSpace: ['127.50.0.0/24'],
      subnets: [{ name: 'small', cidr: '127.50.0.0/29' }],
    });
    await api('POST', '/v1/subscriptions/tiny/services', { name: 'tinysvc', vnet: 'tiny-net' });
    // A /29 has 8 addresses, 5 of them reserved: three VMs fill it.
    for (const name of ['t1', 't2', 't3'])
      await api('POST', '/v1/services/tinysvc/vms', { name, subnet: 'small' });
    await api('POST', '/v1/services/tinysvc/vms', { name: 't4', subnet: 'small', start: false });

    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/tinysvc`);
    await page.getByRole('heading', { name: 'Cloud service tinysvc' }).waitFor();
    await waitText(page, 'dip-t4', 'no DIP');
    await page.getByRole('button', { name: 'Start tinysvc/t4', exact: true }).click();
    await page
      .getByRole('dialog', { name: 'Start tinysvc/t4?' })
      .getByRole('button', { name: 'Start', exact: true })
      .click();
    const banner = page.getByTestId('problem');
    await banner.waitFor();
    const shown = await banner.innerText();
    assert.match(shown, /Start tinysvc\/t4 failed: pool exhausted/);
    assert.match(shown, /small/, 'the detail names the full subnet');
    assert.match(shown, /HTTP 409 · POOL_EXHAUSTED/);
    // Nothing half-applied: the VM is still deallocated, here and in the API.
    await waitText(page, 'dip-t4', 'no DIP');
    assert.equal((await api<Vm>('GET', '/v1/services/tinysvc/vms/t4')).state, 'deallocated');
    await screenshot(page, 'dashboard-error-pool-exhausted');
    await banner.getByRole('button', { name: /Dismiss/ }).click();
    await banner.waitFor({ state: 'detached' });
    await page.close();
  });

  test('an action the server refuses because the VM changed meanwhile (a crafted start of a running VM) is shown, not swallowed', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/blog`);
    await page.getByRole('heading', { name: 'Cloud service blog' }).waitFor();
    await waitText(page, 'dip-www2', 'no DIP');
    await page.getByRole('button', { name: 'Start blog/www2', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Start blog/www2?' });
    await dialog.waitFor();
    // Someone else starts it while the dialog is open; the page's request is now a start of a running VM.
    await api('POST', '/v1/services/blog/vms/www2/start');
    await dialog.getByRole('button', { name: 'Start', exact: true }).click();
    const banner = page.getByTestId('problem');
    await banner.waitFor();
    const shown = await banner.innerText();
    assert.match(shown, /Start blog\/www2 failed: invalid transition/);
    assert.match(shown, /cannot start VM blog\/www2: it is running/);
    assert.match(shown, /HTTP 409 · INVALID_TRANSITION/);
    await waitText(page, 'dip-www2', /^\d+\.\d+\.\d+\.\d+$/);
    await screenshot(page, 'dashboard-error-invalid-transition');
    await page.close();
  });

  test('the events page lists new events live and filters them', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.getByRole('link', { name: 'Events' }).click();
    await page.getByRole('heading', { name: 'Events', level: 1 }).waitFor();
    await waitLive(page);
    const timeline = page.getByTestId('timeline');
    await timeline.getByRole('row').nth(5).waitFor();
    await api('POST', '/v1/services/api/vms/api1/restart');
    const row = timeline
      .getByRole('row')
      .filter({ hasText: 'vm.restarted' })
      .filter({ hasText: 'vm/api/api1' });
    await row.waitFor();
    await page.getByLabel('Type').selectOption('vm.dip');
    await page.getByLabel('Resource, reason or change contains').fill('blog/www1');
    const rows = timeline.locator('tbody tr');
    await page.waitForFunction(
      `() => [...document.querySelectorAll('[data-testid="timeline"] tbody tr')].every((r) => r.textContent.includes('vm.dip'))`,
    );
    const n = await rows.count();
    assert.ok(n >= 2, `www1's DIP changes: ${n}`);
    for (let i = 0; i < n; i++) {
      const t = await rows.nth(i).innerText();
      assert.match(t, /vm\.dip/);
      assert.match(t, /vm\/blog\/www1/);
    }
    await screenshot(page, 'dashboard-events');
    await page.close();
  });

  test('a reserved IP is disassociated and associated again from the service page, the VIP following live', async () => {
    const rip = await api<{ address: string; service: string | null }>(
      'GET',
      '/v1/subscriptions/contoso/reserved-ips/shop-ip',
    );
    assert.equal(rip.service, 'shop');
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/shop`);
    await waitText(page, 'vip', rip.address);
    await waitLive(page);
    await markPage(page);
    await page.getByRole('button', { name: 'Disassociate', exact: true }).click();
    const d1 = page.getByRole('dialog', { name: 'Disassociate reserved IP shop-ip?' });
    assert.match(await d1.innerText(), /draws a new VIP from the public pool/);
    await d1.getByRole('button', { name: 'Disassociate', exact: true }).click();
    await waitText(page, 'vip', /^127\.100\.\d+\.\d+$/);
    await page.getByLabel('Reserved IP to associate').waitFor();
    const drawn = await text(page, 'vip');
    assert.notEqual(drawn, rip.address, 'a new VIP was drawn in place of the reserved one');
    await page.getByLabel('Reserved IP to associate').selectOption('shop-ip');
    await page.getByRole('button', { name: 'Associate', exact: true }).click();
    await page
      .getByRole('dialog', { name: 'Associate reserved IP shop-ip with shop?' })
      .getByRole('button', { name: 'Associate', exact: true })
      .click();
    await waitText(page, 'vip', rip.address);
    await assertNotReloaded(page);
    assert.equal((await api<Service>('GET', '/v1/services/shop')).vip, rip.address);
    await page.close();
  });

  test("host maintenance from the overview moves the host's VMs, their new hosts and DIPs showing live", async () => {
    const before = await api<(Vm & { host: string | null })[]>('GET', '/v1/vms');
    const host = before.find((v) => v.host !== null && v.staticDip === null)!.host!;
    const moving = before.filter((v) => v.host === host);
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await waitLive(page);
    await markPage(page);
    await page.getByRole('button', { name: `Maintenance of ${host}`, exact: true }).click();
    await page
      .getByRole('dialog', { name: `Maintenance of ${host}?` })
      .getByRole('button', { name: 'Start maintenance' })
      .click();
    const row = page
      .getByRole('row')
      .filter({ has: page.getByRole('rowheader', { name: host, exact: true }) });
    await row.getByRole('cell', { name: '0', exact: true }).waitFor();
    const after = await api<(Vm & { host: string | null })[]>('GET', '/v1/vms');
    for (const v of moving) {
      const now = after.find((x) => x.service === v.service && x.name === v.name)!;
      assert.notEqual(now.host, host, `${v.service}/${v.name} left ${host}`);
      await waitText(page, `dip-${v.service}-${v.name}`, now.dip!);
    }
    await assertNotReloaded(page);
    await page.close();
  });

  test('the token stays for the life of the tab, never goes into a URL, and signing out forgets it', async () => {
    const page = await browser.newPage();
    const urls: string[] = [];
    page.on('request', (r: Request) => urls.push(r.url()));
    await signIn(page, srv.url, srv.operatorToken);
    await waitLive(page);
    await page.reload();
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    assert.equal(
      await page.evaluate<string | null>('sessionStorage.getItem("vipdip.token")'),
      srv.operatorToken,
    );
    assert.equal(await page.evaluate<string | null>('localStorage.length'), 0, 'nothing in localStorage');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    assert.equal(await page.evaluate<string | null>('sessionStorage.getItem("vipdip.token")'), null);
    await page.reload();
    await page.getByLabel('API token').waitFor();
    assert.ok(urls.length > 10);
    const leaks = urls.filter(
      (u) => u.includes(srv.operatorToken) || u.includes(encodeURIComponent(srv.operatorToken)),
    );
    assert.deepEqual(leaks, [], 'no URL carries the token');
    // A wrong token is refused with the problem shown on the form.
    await page.getByLabel('API token').fill('vipdip_not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.innerText(), /unauthorized.*the token is not valid/s);
    await page.close();
  });

  test('deleting a VM from its own page asks first, then shows its service without it', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await page.goto(`${srv.url}/services/tinysvc/vms/t4`);
    await page.getByRole('heading', { name: /VM tinysvc\/t4/ }).waitFor();
    await page.getByRole('button', { name: 'Delete tinysvc/t4', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete tinysvc/t4?' });
    // Destructive: Cancel has the focus, so a stray Enter deletes nothing.
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await api<Vm>('GET', '/v1/services/tinysvc/vms/t4')).name, 't4');
    await page.getByRole('button', { name: 'Delete tinysvc/t4', exact: true }).click();
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('heading', { name: 'Cloud service tinysvc' }).waitFor();
    await page.getByTestId('vm-row-t3').waitFor();
    await page.getByTestId('vm-row-t4').waitFor({ state: 'detached' });
    assert.equal((await call(srv, srv.operatorToken, 'GET', '/v1/services/tinysvc/vms/t4')).status, 404);
    await page.close();
  });

  test('a change refetches only what it touches: a VM stopped elsewhere refetches the VM list, not the pools, networks or hosts', async () => {
    const page = await browser.newPage();
    await signIn(page, srv.url, srv.operatorToken);
    await waitLive(page);
    await page.getByTestId('chip-api-api1').waitFor();
    await page.getByRole('heading', { name: 'Hosts' }).waitFor();
    const fetched: string[] = [];
    page.on('request', (r: Request) => {
      const u = new URL(r.url());
      if (r.method() === 'GET' && u.pathname !== '/v1/events/stream') fetched.push(u.pathname);
    });
    await api('POST', '/v1/services/api/vms/api1/stop');
    await page.locator('[data-testid="chip-api-api1"].state-stopped').waitFor();
    // A moment for anything else the event might (wrongly) have triggered.
    await page.waitForTimeout(500);
    assert.deepEqual([...new Set(fetched)], ['/v1/vms'], 'a state change touches the VM list only');
    await api('POST', '/v1/services/api/vms/api1/start');
    await page.close();
  });
});
