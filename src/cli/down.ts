/**
 * `vipdip down [--state DIR]`: stops the `vipdip up` of a state directory, found through its lock
 * (up-lock.ts), with SIGTERM, and waits until it has closed its state cleanly. Nothing running is not
 * a failure: `down` twice stops once.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CliError, UsageError } from './errors.ts';
import { isVipdipRunning, lockPath, readUpLock } from './up-lock.ts';

/** How long `down` waits by default: `up` lets workloads end (SIGKILL after their grace) and requests finish. */
export const DOWN_TIMEOUT_S = 30;
const POLL_MS = 50;

export function registerDown(program: Command): void {
  program
    .command('down')
    .description('stop the vipdip up of a state directory and wait for it to close cleanly')
    .option('--state <dir>', 'state directory', '.vipdip')
    .option('--timeout <seconds>', 'how long to wait for it to stop', String(DOWN_TIMEOUT_S))
    .action(async (opts: { state: string; timeout: string }) => {
      if (!/^\d{1,5}$/.test(opts.timeout) || Number(opts.timeout) === 0) {
        throw new UsageError(`--timeout ${opts.timeout}: must be a whole number of seconds, at least 1`);
      }
      const dir = resolve(opts.state);
      const held = readUpLock(dir);
      if (held === undefined) {
        process.stdout.write(`vipdip is not running on ${dir}\n`);
        return;
      }
      if (!isVipdipRunning(held.pid)) {
        process.stdout.write(
          `vipdip is not running on ${dir} (the lock of PID ${held.pid} was left by a process that is gone; the next up takes it over)\n`,
        );
        return;
      }
      try {
        process.kill(held.pid, 'SIGTERM');
      } catch (e) {
        throw new CliError(`cannot stop PID ${held.pid}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const deadline = Date.now() + Number(opts.timeout) * 1000;
      // Stopped cleanly once the lock is gone (up removes it after closing the state) and so is the PID.
      for (;;) {
        const locked = existsSync(lockPath(dir)) && readUpLock(dir)?.pid === held.pid;
        const running = isVipdipRunning(held.pid);
        if (!locked && !running) break;
        if (locked && !running) {
          throw new CliError(
            `vipdip up (PID ${held.pid}) ended without closing its state cleanly; run vipdip fsck --state ${opts.state}`,
          );
        }
        if (Date.now() > deadline) {
          throw new CliError(
            `vipdip up (PID ${held.pid}) has not stopped after ${opts.timeout} s; it may still be closing (kill -9 ${held.pid} ends it at once)`,
          );
        }
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
      process.stdout.write(`vipdip stopped (PID ${held.pid}); state ${dir} closed cleanly\n`);
    });
}
