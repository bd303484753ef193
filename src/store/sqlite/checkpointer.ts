/**
 * WAL checkpoints on a thread of their own. A checkpoint copies the WAL back into the database file
 * and syncs both; in the event loop's thread, each sync stalled every request for tens of
 * milliseconds (p99 of 50 ms at 500 req/s, against 15 with SQLite's own checkpoints every ~100
 * commits, which themselves cost a quarter of the time of in-process cycles). A worker with its own
 * connection runs a passive checkpoint, which never blocks the writer, at the interval the store gives.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Runs in the worker: CommonJS, given the driver's path, the database and the interval. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma('busy_timeout = 1000');
db.pragma('synchronous = ' + workerData.synchronous);
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or gone: the next tick, or SQLite's own threshold, checkpoints.
  }
}, workerData.intervalMs);
parentPort.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.postMessage('closed');
});
`;

/** How long `stop` waits for the worker to close its connection before ending it. */
const STOP_TIMEOUT_MS = 2000;

export interface Checkpointer {
  /** Stops the checkpoints and closes the worker's connection. */
  stop(): Promise<void>;
}

export function startCheckpointer(
  path: string,
  opts: { intervalMs: number; synchronous: 'NORMAL' | 'FULL' },
): Checkpointer {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver, path, intervalMs: opts.intervalMs, synchronous: opts.synchronous },
  });
  // A failure of the worker (a database it cannot open) leaves SQLite's own checkpoints to do it.
  worker.on('error', () => {});
  worker.unref();
  let stopped: Promise<void> | undefined;
  return {
    stop: () =>
      (stopped ??= new Promise<void>((ok) => {
        const timer = setTimeout(() => void worker.terminate().then(() => ok()), STOP_TIMEOUT_MS);
        const done = () => {
          clearTimeout(timer);
          void worker.terminate().then(() => ok());
        };
        worker.once('message', done);
        worker.once('exit', done);
        worker.postMessage('close');
      })),
  };
}
