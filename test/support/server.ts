/** Runs a real `vipdip up` process on a free loopback port with a temporary state, for tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const BIN = resolve(import.meta.dirname, '../../bin/vipdip.js');

export interface TestServer {
  url: string;
  dir: string;
  stateDir: string;
  operatorToken: string;
  proc: ChildProcess;
  output(): string;
  /** Stops the server with SIGTERM (SIGKILL after 5 s) and removes the state unless keep is set. */
  stop(opts?: { keep?: boolean }): Promise<number | null>;
}

export interface StartServerOptions {
  args?: string[];
  dir?: string;
  /** `up` (default, with `--driver none`) or `serve` (the control plane alone). */
  command?: 'up' | 'serve';
  env?: Record<string, string>;
}

export async function startServer(opts: StartServerOptions = {}): Promise<TestServer> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'vipdip-srv-'));
  const stateDir = join(dir, '.vipdip');
  const command = opts.command ?? 'up';
  const proc = spawn(
    process.execPath,
    [
      BIN,
      command,
      '--state',
      stateDir,
      '--listen',
      '127.0.0.1:0',
      ...(command === 'up' ? ['--driver', 'none'] : []),
      '--dns',
      'off',
      ...(opts.args ?? []),
    ],
    // VIPDIP_STORE of the caller's shell must not send a test's server elsewhere.
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VIPDIP_STORE: '', ...opts.env } },
  );
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`vipdip ${command} did not start in 30 s:\n${out}`)),
      30_000,
    );
    const check = () => {
      const m = /API and dashboard on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    };
    proc.stdout.on('data', check);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`vipdip ${command} exited with ${code}:\n${out}`));
    });
  });
  const operatorToken = readFileSync(join(stateDir, 'operator.token'), 'utf8').trim();
  return {
    url,
    dir,
    stateDir,
    operatorToken,
    proc,
    output: () => out,
    stop: async ({ keep = false } = {}) => {
      const code = await new Promise<number | null>((ok) => {
        if (proc.exitCode !== null) return ok(proc.exitCode);
        const kill = setTimeout(() => proc.kill('SIGKILL'), 5000);
        proc.once('exit', (c) => {
          clearTimeout(kill);
          ok(c);
        });
        proc.kill('SIGTERM');
      });
      if (!keep && opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A small fetch wrapper: JSON in, { status, headers, body } out. */
export async function call(
  server: { url: string },
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
  const h: Record<string, string> = { ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(server.url + path, {
    method,
    headers: h,
    ...(payload !== undefined ? { body: payload } : {}),
  });
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/**
 * Runs the vipdip CLI to its end (bounded at 60 s) with VIPDIP_STORE cleared unless `env` sets it,
 * and returns its exit code and output.
 */
export function vipdip(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, VIPDIP_STORE: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let out = '';
    let err = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    c.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    c.once('error', reject);
    c.once('close', (code) => resolve({ code, out, err }));
  });
}
