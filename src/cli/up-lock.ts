/**
 * The lock `vipdip up` holds on its state directory: a small JSON file naming the process and, once
 * it serves, where. It keeps a second `up` off the same state, and it is how `down` and `status` find
 * the running one without any server code (they load this file and nothing else of the server).
 *
 * A lock left behind by a crash (kill -9, a power cut) is recognised by its PID: gone, or now another
 * program's, and the next `up` takes it over.
 */
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CliError } from './errors.ts';

export const UP_LOCK_FILE = 'up.lock';

/** What the lock file holds. Addresses appear once the server is ready. */
export interface UpLockInfo {
  pid: number;
  /** ISO 8601, when this `up` started. */
  startedAt: string;
  version: string;
  /** The absolute state directory. */
  state: string;
  /** The store's location (credentials redacted), once open. */
  store?: string;
  /** The API and dashboard's base URL, once listening. */
  api?: string;
  /** The DNS server's HOST:PORT, or null when DNS is off; absent until listening. */
  dns?: string | null;
  driver?: string;
}

export const lockPath = (stateDir: string) => join(resolve(stateDir), UP_LOCK_FILE);

/**
 * Whether `pid` is a running vipdip. A PID that answers signal 0 may since have been reused by another
 * program (after a crash and a reboot, say): on Linux its command line must name vipdip too, and a
 * zombie (an empty command line) is gone.
 */
export function isVipdipRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists, as another user's process; it may be a vipdip we cannot see into.
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    // No /proc (macOS): signal 0 is all there is to go by.
    return process.platform !== 'linux';
  }
  return cmdline.includes('vipdip');
}

/** The lock of a state directory as it is on disk, or undefined when there is none (or it is unreadable). */
export function readUpLock(stateDir: string): UpLockInfo | undefined {
  let text: string;
  try {
    text = readFileSync(lockPath(stateDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(
      `cannot read ${lockPath(stateDir)}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  try {
    const info = JSON.parse(text) as UpLockInfo;
    if (typeof info.pid === 'number' && typeof info.startedAt === 'string') return info;
  } catch {
    // A lock cut short by a crash while it was being written: no process to go by.
  }
  return { pid: 0, startedAt: new Date(0).toISOString(), version: 'unknown', state: resolve(stateDir) };
}

export interface UpLock {
  readonly path: string;
  /** Adds what became known (addresses, driver) to the lock, atomically. */
  update(more: Partial<UpLockInfo>): void;
  /** Removes the lock, if it is still this process's. */
  release(): void;
}

/**
 * Takes the lock of a state directory (which must exist) for this process, or throws a CliError
 * naming the `up` that holds it. A stale lock (its process gone) is taken over.
 */
export function acquireUpLock(stateDir: string, info: Omit<UpLockInfo, 'pid' | 'state'>): UpLock {
  const path = lockPath(stateDir);
  let current: UpLockInfo = { pid: process.pid, state: resolve(stateDir), ...info };
  // Written whole under another name, then linked into place: link() fails if the lock exists, so of
  // two `up`s racing for a free state exactly one wins, and no reader ever sees half a file.
  const write = (target: 'create' | 'replace') => {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(current, null, 2)}\n`, { mode: 0o600 });
    try {
      if (target === 'create') linkSync(tmp, path);
      else renameSync(tmp, path);
    } finally {
      if (target === 'create') unlinkSync(tmp);
    }
  };
  for (let attempt = 0; ; attempt++) {
    try {
      write('create');
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw lockError(e, path);
    }
    const held = readUpLock(stateDir);
    if (held !== undefined && isVipdipRunning(held.pid)) {
      throw new CliError(
        `the state ${resolve(stateDir)} is in use by vipdip up (PID ${held.pid}` +
          (held.api !== undefined ? `, API on ${held.api}` : '') +
          `, since ${held.startedAt}); stop it with: vipdip down --state ${stateDir}`,
      );
    }
    // Stale: its process is gone. Take it over (once; a second EEXIST means another up just won).
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw lockError(e, path);
    }
  }
  return {
    path,
    update(more) {
      current = { ...current, ...more };
      write('replace');
    },
    release() {
      if (readUpLock(stateDir)?.pid !== process.pid) return;
      try {
        unlinkSync(path);
      } catch {
        // Already gone: nothing to release.
      }
    },
  };
}

function lockError(e: unknown, path: string): CliError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EEXIST') return new CliError(`another vipdip up took the lock ${path} just now`);
  return new CliError(`cannot take the lock ${path}: ${code ?? String(e)}`);
}
