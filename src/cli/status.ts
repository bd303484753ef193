/**
 * `vipdip status [--state DIR] [-o table|json|yaml]`: whether the `vipdip up` of a state directory
 * runs, and if so its PID, addresses, uptime and driver, read from its lock (up-lock.ts). Exit 0 when
 * it runs, 3 when it does not (as LSB init scripts' `status` does), so a script can ask.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { outputOption, print } from './output.ts';
import { isVipdipRunning, readUpLock } from './up-lock.ts';

/** The exit code of `status` when nothing runs on the state. */
export const NOT_RUNNING_EXIT = 3;

/** What `status -o json` prints. Fields other than `running` and `state` are null when it does not run. */
export interface UpStatus {
  running: boolean;
  state: string;
  pid: number | null;
  /** ISO 8601. */
  startedAt: string | null;
  uptimeSeconds: number | null;
  api: string | null;
  dns: string | null;
  driver: string | null;
  store: string | null;
  version: string | null;
}

export function upStatus(stateDir: string, now: number = Date.now()): UpStatus {
  const state = resolve(stateDir);
  const held = readUpLock(state);
  if (held === undefined || !isVipdipRunning(held.pid)) {
    return {
      running: false,
      state,
      pid: null,
      startedAt: null,
      uptimeSeconds: null,
      api: null,
      dns: null,
      driver: null,
      store: null,
      version: null,
    };
  }
  return {
    running: true,
    state,
    pid: held.pid,
    startedAt: held.startedAt,
    uptimeSeconds: Math.max(0, Math.floor((now - Date.parse(held.startedAt)) / 1000)),
    api: held.api ?? null,
    dns: held.dns ?? null,
    driver: held.driver ?? null,
    store: held.store ?? null,
    version: held.version,
  };
}

/** 3725 s → `1h 2m 5s`. */
export function formatUptime(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const parts = [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', `${s}s`].filter(Boolean);
  return (d || h ? parts.slice(0, -1) : parts).join(' ');
}

function describe(s: UpStatus): string {
  if (!s.running) return `vipdip is not running on ${s.state}\n`;
  const rows: [string, string][] = [
    ['state', s.state + (s.store !== null ? ` (store ${s.store})` : '')],
    ['API', s.api === null ? 'starting' : `${s.api} (and the dashboard)`],
    ['DNS', s.api === null ? 'starting' : (s.dns ?? 'off')],
    ['driver', s.driver ?? 'starting'],
    ['version', s.version ?? '-'],
  ];
  return (
    `vipdip is ${s.api === null ? 'starting' : 'running'}: PID ${s.pid}, up ${formatUptime(s.uptimeSeconds!)} (since ${s.startedAt})\n` +
    rows.map(([k, v]) => `  ${k.padEnd(8)} ${v}\n`).join('')
  );
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('say whether vipdip up runs on a state directory: its PID, addresses, uptime and driver')
    .option('--state <dir>', 'state directory', '.vipdip')
    .addOption(outputOption())
    .action(async (opts: { state: string; output: string }) => {
      const s = upStatus(opts.state);
      await print(opts.output, s, () => describe(s));
      if (!s.running) process.exitCode = NOT_RUNNING_EXIT;
    });
}
