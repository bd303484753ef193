/**
 * Shared set-up for tests that run the lifecycle over a real store: a SQLite file, or a database
 * of a throwaway PostgreSQL cluster (test/support/postgres.ts). Suites that hold for every store
 * loop over DIALECTS, as Kysely's own tests do.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { SeededRandom, steppingClock } from '../../src/core/index.ts';
import { Cloud } from '../../src/lifecycle/index.ts';
import { PostgresStore, SqliteStore, type Store } from '../../src/store/index.ts';
import type { PgCluster } from './postgres.ts';

export const DIALECTS = ['sqlite', 'postgres'] as const;
export type Dialect = (typeof DIALECTS)[number];

export interface TestCloud {
  cloud: Cloud;
  store: SqliteStore;
  dir: string;
  close(): Promise<void>;
}

/** A cloud on a fresh SQLite file in a temporary directory, removed on close. */
export async function makeCloud(
  opts: { seed?: number; pools?: string[]; dir?: string } = {},
): Promise<TestCloud> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'vipdip-test-'));
  const store = await SqliteStore.open(join(dir, 'state.db'));
  const cloud = await Cloud.open(store, {
    random: new SeededRandom(opts.seed ?? 42),
    clock: steppingClock(),
    defaultPublicPools: opts.pools ?? ['127.100.0.0/16'],
  });
  return {
    cloud,
    store,
    dir,
    close: async () => {
      cloud.close();
      await store.close();
      if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface DialectCloud {
  dialect: Dialect;
  cloud: Cloud;
  store: Store;
  /** Another store and cloud on the same state (a restart, or a second replica). */
  open(opts?: { seed?: number }): Promise<{ cloud: Cloud; store: Store; close(): Promise<void> }>;
  /** Closes everything opened and removes the state (file or database). */
  close(): Promise<void>;
}

export interface DialectCloudOptions {
  seed?: number;
  pools?: string[];
  /** Required for postgres: the cluster in which a fresh database is made. */
  cluster?: PgCluster;
}

/** A cloud on a fresh state of the given dialect. */
export async function makeDialectCloud(
  dialect: Dialect,
  opts: DialectCloudOptions = {},
): Promise<DialectCloud> {
  let openStore: () => Promise<Store>;
  let remove: () => Promise<void>;
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'vipdip-test-'));
    openStore = () => SqliteStore.open(join(dir, 'state.db'));
    remove = () => Promise.resolve(rmSync(dir, { recursive: true, force: true }));
  } else {
    const cluster = opts.cluster;
    if (cluster === undefined) throw new Error('makeDialectCloud(postgres) needs a cluster');
    const name = `t_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
    const url = await cluster.createDatabase(name);
    openStore = () => PostgresStore.open(url);
    remove = () => cluster.dropDatabase(name);
  }
  const opened: { cloud: Cloud; store: Store }[] = [];
  const open = async (o: { seed?: number } = {}) => {
    const store = await openStore();
    const cloud = await Cloud.open(store, {
      random: new SeededRandom(o.seed ?? opts.seed ?? 42),
      clock: steppingClock(),
      defaultPublicPools: opts.pools ?? ['127.100.0.0/16'],
    });
    const entry = { cloud, store };
    opened.push(entry);
    return {
      cloud,
      store,
      close: async () => {
        cloud.close();
        await store.close();
      },
    };
  };
  const first = await open();
  return {
    dialect,
    cloud: first.cloud,
    store: first.store,
    open,
    close: async () => {
      for (const o of opened) {
        o.cloud.close();
        await o.store.close();
      }
      await remove();
    },
  };
}

/** A contoso subscription with one VNet (front /24, back /24) and a service `shop` bound to it. */
export async function withShop(cloud: Cloud): Promise<void> {
  await cloud.createSubscription('contoso');
  await cloud.createVnet('contoso', {
    name: 'shop-net',
    addressSpace: ['127.16.0.0/16'],
    subnets: [
      { name: 'front', cidr: '127.16.1.0/24' },
      { name: 'back', cidr: '127.16.2.0/24' },
    ],
  });
  await cloud.createService('contoso', { name: 'shop', vnet: 'shop-net' });
}

/** The domain's tables (not the migrator's bookkeeping). */
const TABLES = [
  'subscriptions',
  'public_pools',
  'hosts',
  'vnets',
  'subnets',
  'reserved_ips',
  'cloud_services',
  'vms',
  'address_bindings',
  'events',
  'meta',
  'tokens',
] as const;

/**
 * Every row of every domain table, in a stable order, through the store itself (so for either
 * dialect): equal dumps mean an unchanged state.
 */
export async function dumpStore(store: Store): Promise<string> {
  const out: Record<string, unknown[]> = {};
  await store.snapshot(async (repo) => {
    for (const t of TABLES) {
      const { rows } = await sql<
        Record<string, unknown>
      >`select * from ${sql.table(t)} order by 1, 2`.execute(repo.db);
      out[t] = rows;
    }
  });
  return JSON.stringify(out);
}
