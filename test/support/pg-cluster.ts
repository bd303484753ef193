/**
 * A throwaway PostgreSQL cluster (for tests and benchmarks): initdb and pg_ctl from the installed
 * PostgreSQL 15 binaries, run as the `postgres` OS user when we are root, in a fresh temporary
 * directory, on a free loopback port, with its unix socket inside that directory. An exit hook
 * stops whatever is still running as a last resort. If PostgreSQL cannot start, this throws.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const PG_BIN = process.env.VIPDIP_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PgCluster {
  /** Connection URL of the `postgres` database (the maintenance database). */
  url: string;
  port: number;
  dir: string;
  /** The URL of another database of this cluster. */
  urlOf(database: string): string;
  /** Creates an empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Runs one SQL statement on the maintenance database. */
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** Stops the server (fast shutdown: sessions are terminated); the data directory stays. */
  stopServer(): void;
  /** Starts it again on the same port and data directory. */
  startServer(): void;
  /** Stops the server and removes everything. Safe to call twice. */
  destroy(): void;
}

const live = new Set<PgCluster>();
let hooked = false;

/** Stops every cluster still running when the process exits, whatever the reason. */
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of live) c.destroy();
  });
}

const asRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a PostgreSQL binary as the postgres user when we are root (initdb refuses root). */
function pgRun(bin: string, args: string[], opts: { timeoutMs?: number } = {}): string {
  const exe = join(PG_BIN, bin);
  const [cmd, argv] = asRoot() ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000 });
  if (r.error !== undefined || r.status !== 0) {
    throw new Error(
      `PostgreSQL could not run ${bin} ${args.join(' ')}: ${r.error?.message ?? `exit ${r.status}`}\n${r.stdout}\n${r.stderr}`,
    );
  }
  return r.stdout;
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => ok(port));
    });
  });
}

export interface PgClusterOptions {
  /** Extra `-c name=value` settings of the server. */
  settings?: Record<string, string>;
}

/**
 * Starts a fresh cluster. The settings favour speed over durability against power loss (it is
 * thrown away): fsync off, as SQLite's synchronous=NORMAL a commit still reaches the kernel, so a
 * killed client or server process loses nothing that was acknowledged.
 */
export async function startPostgres(opts: PgClusterOptions = {}): Promise<PgCluster> {
  if (!existsSync(join(PG_BIN, 'initdb'))) {
    throw new Error(
      `PostgreSQL 15 is not installed: ${join(PG_BIN, 'initdb')} is missing (apt-get install postgresql-15, as .ci/run does)`,
    );
  }
  hookExit();
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-pg-'));
  const data = join(dir, 'data');
  const owner = asRoot() ? 'postgres' : userInfo().username;
  if (asRoot()) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  let port = 0;
  let running = false;
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    fsync: 'off',
    full_page_writes: 'off',
    max_connections: '200',
    shared_buffers: '64MB',
    log_min_messages: 'warning',
    ...opts.settings,
  };
  const serverOptions = () =>
    [`-p ${port}`, ...Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`)].join(' ');

  const startServer = () => {
    pgRun('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-o',
      serverOptions(),
      '-w',
      '-t',
      '60',
      'start',
    ]);
    running = true;
  };
  const stopServer = () => {
    if (!running) return;
    pgRun('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };
  let destroyed = false;
  const cluster: PgCluster = {
    url: '',
    port: 0,
    dir,
    urlOf: (db) => `postgres://${owner}@127.0.0.1:${port}/${db}`,
    createDatabase: async (name = `t_${process.pid}_${Math.random().toString(36).slice(2, 10)}`) => {
      await cluster.query(`create database "${name}"`);
      return cluster.urlOf(name);
    },
    dropDatabase: async (name) => {
      await cluster.query(`drop database if exists "${name}" with (force)`);
    },
    query: async (sql, params) => {
      const c = new pg.Client({ connectionString: cluster.url });
      await c.connect();
      try {
        return await c.query(sql, params);
      } finally {
        await c.end();
      }
    },
    stopServer,
    startServer,
    destroy: () => {
      if (destroyed) return;
      destroyed = true;
      live.delete(cluster);
      try {
        if (running) pgRun('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '30', 'stop']);
      } catch {
        // It may be gone already; the directory goes anyway.
      }
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  live.add(cluster);
  try {
    pgRun('initdb', ['-D', data, '-U', owner, '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C']);
    // The port is free when drawn but may be taken before the server binds it: draw again then.
    for (let attempt = 0; ; attempt++) {
      port = await freePort();
      try {
        startServer();
        break;
      } catch (e) {
        const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8') : '';
        if (attempt >= 4 || !/could not bind|already in use/i.test(log)) throw e;
      }
    }
  } catch (e) {
    const log = existsSync(join(dir, 'server.log')) ? readFileSync(join(dir, 'server.log'), 'utf8') : '';
    cluster.destroy();
    throw new Error(`PostgreSQL could not start: ${(e as Error).message}\n${log}`, { cause: e });
  }
  cluster.port = port;
  cluster.url = cluster.urlOf('postgres');
  return cluster;
}
