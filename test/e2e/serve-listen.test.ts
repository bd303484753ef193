/**
 * Tokens never cross a network in clear by accident: the server binds loopback by default, and a
 * non-loopback address needs TLS (--tls-cert and --tls-key) or an explicit --insecure-http. Each
 * refusal is one line and exit 1, before any state is created; with a certificate it serves HTTPS.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BIN, vipdip } from '../support/server.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vipdip-listen-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const serve = (args: string[]) => vipdip(['serve', '--dns', 'off', ...args]);

/** A refusal: exit 1, one line on stderr naming what was wrong, and no state directory made. */
async function refused(args: string[], want: RegExp): Promise<void> {
  const state = join(dir, `refused-${Math.random().toString(36).slice(2)}`);
  const r = await serve(['--state', state, ...args]);
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, want);
  assert.equal(r.err.trim().split('\n').length, 1, r.err);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  assert.equal(existsSync(state), false, 'nothing was created');
}

// 192.0.2.1 (TEST-NET-1) is on no interface here: were the rule broken, the bind would fail too,
// and nothing would listen beyond loopback.
test('a non-loopback address without TLS is refused, naming both ways out', async () => {
  await refused(
    ['--listen', '192.0.2.1:0'],
    /not a loopback address: give --tls-cert and --tls-key, or --insecure-http/,
  );
});

test('a name is judged by what it resolves to, not by its text', async () => {
  // Starts with "127." but is a name, and resolves nowhere: refused, naming the lookup.
  await refused(
    ['--listen', '127.attacker.invalid:0'],
    /--listen 127\.attacker\.invalid: the name does not resolve/,
  );
});

test('a name that resolves to loopback only is served without TLS', async () => {
  const c = spawn(
    process.execPath,
    [BIN, 'serve', '--dns', 'off', '--state', join(dir, 'byname'), '--listen', 'localhost:0'],
    { env: { ...process.env, VIPDIP_STORE: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  try {
    const banner = await new Promise<string>((ok, fail) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error(`no banner:\n${out}`)), 30_000);
      const seen = (s: string) => {
        out += s;
        if (/API and dashboard on http:\/\//.test(out)) {
          clearTimeout(timer);
          ok(out);
        }
      };
      c.stdout.setEncoding('utf8').on('data', seen);
      c.stderr.setEncoding('utf8').on('data', seen);
      c.once('exit', (code) => fail(new Error(`serve exited ${code}:\n${out}`)));
    });
    assert.match(banner, /API and dashboard on http:\/\/(localhost|127\.0\.0\.1|\[::1\]):\d+/);
  } finally {
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
});

test('--tls-cert without --tls-key is refused', async () => {
  await refused(
    ['--listen', '127.0.0.1:0', '--tls-cert', join(dir, 'c.pem')],
    /--tls-cert and --tls-key go together/,
  );
});

test('a certificate file that cannot be read is refused, naming the flag', async () => {
  await refused(
    [
      '--listen',
      '127.0.0.1:0',
      '--tls-cert',
      join(dir, 'missing.pem'),
      '--tls-key',
      join(dir, 'missing.key'),
    ],
    /--tls-cert \S+missing\.pem: no such file/,
  );
});

test('with a certificate and key the API answers over HTTPS', async () => {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  const c = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--dns',
      'off',
      '--state',
      join(dir, 'tls'),
      '--listen',
      '127.0.0.1:0',
      '--tls-cert',
      cert,
      '--tls-key',
      key,
    ],
    { env: { ...process.env, VIPDIP_STORE: '' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const url = await new Promise<string>((ok, fail) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error(`no banner:\n${out}`)), 30_000);
      c.stdout.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        const m = /API and dashboard on (https:\/\/127\.0\.0\.1:\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          ok(m[1]!);
        }
      });
      c.once('exit', (code) => fail(new Error(`serve exited ${code}:\n${out}`)));
    });
    const status = await new Promise<number | undefined>((ok, fail) => {
      request(`${url}/healthz`, { ca: readFileSync(cert) }, (res) => {
        res.resume();
        res.once('end', () => ok(res.statusCode));
      })
        .once('error', fail)
        .end();
    });
    assert.equal(status, 200);
    // The CLI over HTTPS, trusting the certificate as a user would (NODE_EXTRA_CA_CERTS).
    const token = readFileSync(join(dir, 'tls', 'operator.token'), 'utf8').trim();
    const r = await vipdip(['get', 'vms', '-o', 'json'], {
      VIPDIP_URL: url,
      VIPDIP_TOKEN: token,
      NODE_EXTRA_CA_CERTS: cert,
    });
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), []);
    const untrusted = await vipdip(['get', 'vms'], { VIPDIP_URL: url, VIPDIP_TOKEN: token });
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.err, new RegExp(`^vipdip: cannot connect to ${url}: `));
  } finally {
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await exited;
  }
});
