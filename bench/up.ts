/**
 * A real `vipdip up` in a child process for benchmarks that drive it through its API: started on free
 * loopback ports, ready once its banner says so, stopped by its PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './report.ts';

const UP_TIMEOUT_MS = 60_000;

export interface Up {
  proc: ChildProcess;
  url: string;
  dns: string;
  token: string;
  dir: string;
}

/** Starts `vipdip up --state DIR` on 127.0.0.1 (API and DNS on free ports) with more flags. */
export async function startUp(dir: string, flags: string[]): Promise<Up> {
  const proc = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/vipdip.js'),
      'up',
      '--state',
      dir,
      '--listen',
      '127.0.0.1:0',
      '--dns',
      '127.0.0.1:0',
      ...flags,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  proc.stdout.setEncoding('utf8');
  const ready = await new Promise<{ url: string; dns: string }>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`vipdip up did not start within ${UP_TIMEOUT_MS} ms`)),
      UP_TIMEOUT_MS,
    );
    proc.stdout.on('data', (d: string) => {
      out += d;
      const url = /API and dashboard on (\S+),/.exec(out)?.[1];
      const dns = /DNS on (\S+) \(UDP/.exec(out)?.[1];
      if (url !== undefined && dns !== undefined && out.includes('Ctrl-C stops it')) {
        clearTimeout(timer);
        resolve({ url, dns });
      }
    });
    proc.once('exit', (code) => reject(new Error(`vipdip up exited with ${code}: ${out}`)));
  });
  const token = readFileSync(join(dir, 'operator.token'), 'utf8').trim();
  return { proc, ...ready, token, dir };
}

/** Stops a process by its PID with `signal`, then SIGKILL after 20 s. */
export async function stopProc(proc: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill(signal);
  const kill = setTimeout(() => proc.kill('SIGKILL'), 20_000);
  await gone;
  clearTimeout(kill);
}

/** One API call with the operator's token; a non-2xx answer throws with its body. */
export async function api<T>(up: Up, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${up.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${up.token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
  return (res.status === 204 ? undefined : await res.json()) as T;
}
