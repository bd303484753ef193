/** Shared set-up for tests that run the lifecycle over a real SQLite store. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRandom, steppingClock } from '../../src/core/index.ts';
import { Cloud } from '../../src/lifecycle/index.ts';
import { SqliteStore } from '../../src/store/index.ts';

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
      await store.close();
      if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
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

/** Every row of every table, in a stable order: equal dumps mean an unchanged state. */
export function dumpStore(store: SqliteStore): string {
  const tables = store.raw
    .prepare("select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name")
    .all() as { name: string }[];
  const out: Record<string, unknown[]> = {};
  for (const { name } of tables) out[name] = store.raw.prepare(`select * from "${name}" order by 1, 2`).all();
  return JSON.stringify(out);
}
