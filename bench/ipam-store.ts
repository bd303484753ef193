/**
 * IPAM and lifecycle through the SQLite store: what an allocation costs once the database confirms
 * it, how long the index takes to rebuild from a large state, and VM start/deallocate cycles.
 *
 * - pairs: one transaction that draws an address (index + INSERT under the UNIQUE key) and one that
 *   releases it, for public pools of /24 and /16 at 0, 50, 90 and 99 % and a /8 holding 1,000,000
 *   bound addresses (99 % of a /8 would be a 16 M-row state: the index side of that is measured in
 *   memory by the `memory` section);
 * - load: opening a state whose pool holds 1,000,000 bound addresses (index rebuilt from the store);
 * - cycles: VM deallocate + start through the whole lifecycle (events, VIP rules, placement).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRandom, parseCidr, steppingClock } from '../src/core/index.ts';
import { AddressRange, POOL_RESERVATION } from '../src/ipam/index.ts';
import { Cloud, formatScope, poolScope, type BookChange } from '../src/lifecycle/index.ts';
import { SqliteStore } from '../src/store/index.ts';
import { fmtRate, machine, median, saveJson, saveSection } from './report.ts';

const SEED = 20260102;
const REPEATS = 3;
const PAIR_MS = 400;
const CYCLE_MS = 1500;
const TARGET_CYCLES_PER_S = 5000;

interface PairCell {
  pool: string;
  usable: number;
  bound: number;
  occupancy: number;
  pairsPerSecond: number;
}

async function openCloud(
  path: string,
  pool: string,
  seed = SEED,
): Promise<{ store: SqliteStore; cloud: Cloud }> {
  const store = await SqliteStore.open(path);
  const cloud = await Cloud.open(store, {
    random: new SeededRandom(seed),
    clock: steppingClock(),
    defaultPublicPools: [pool],
  });
  return { store, cloud };
}

/** Binds `count` random addresses of the pool straight into the table, in one transaction. */
function fill(
  store: SqliteStore,
  poolId: number,
  from: number,
  count: number,
  random: SeededRandom,
  range: AddressRange,
): void {
  const insert = store.raw.prepare(
    'insert into address_bindings (scope, address, owner, kind) values (?, ?, ?, ?)',
  );
  store.raw.transaction(() => {
    for (let i = 0; i < count; i++)
      insert.run(
        formatScope(poolScope(poolId)),
        range.allocate('random', random),
        `bench:${from + i}`,
        'vip',
      );
  })();
}

async function pairRate(cloud: Cloud, store: SqliteStore): Promise<number> {
  const scope = poolScope(1);
  const rates: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < PAIR_MS) {
      // As the lifecycle does: the index changes of a transaction are applied once it commits.
      const changes: BookChange[] = [];
      const ip = await store.write((repo) =>
        cloud.book.draw({ repo, record: (c) => changes.push(c) }, scope, 'random', {
          owner: 'bench:pair',
          kind: 'vip',
        }),
      );
      cloud.book.apply(changes.splice(0));
      await store.write((repo) => cloud.book.free({ repo, record: (c) => changes.push(c) }, scope, ip));
      cloud.book.apply(changes.splice(0));
      n++;
    }
    rates.push((n / (performance.now() - t0)) * 1000);
  }
  return median(rates);
}

async function measurePairs(
  dir: string,
  log: (s: string) => void,
): Promise<{ cells: PairCell[]; loadMs: number; loadBound: number }> {
  const cells: PairCell[] = [];
  let loadMs = 0;
  let loadBound = 0;
  const plans: [string, number[]][] = [
    ['127.0.0.0/24', [0, 0.5, 0.9, 0.99]],
    ['127.0.0.0/16', [0, 0.5, 0.9, 0.99]],
    ['127.0.0.0/8', [0, 1_000_000 / 16_777_214]],
  ];
  for (const [pool, occupancies] of plans) {
    const path = join(dir, `pairs-${pool.replace(/[./]/g, '-')}.db`);
    const random = new SeededRandom(SEED);
    const shadow = new AddressRange('shadow', parseCidr(pool), POOL_RESERVATION);
    let bound = 0;
    for (const occ of occupancies) {
      const target = Math.round(shadow.usable * occ);
      {
        const { store } = await openCloud(path, pool);
        fill(store, 1, bound, target - bound, random, shadow);
        bound = target;
        await store.close();
      }
      const t0 = performance.now();
      const { store, cloud } = await openCloud(path, pool);
      const openMs = performance.now() - t0;
      if (bound >= 1_000_000) {
        loadMs = openMs;
        loadBound = bound;
      }
      const rate = await pairRate(cloud, store);
      cells.push({
        pool: pool.slice(pool.indexOf('/')),
        usable: shadow.usable,
        bound,
        occupancy: occ,
        pairsPerSecond: rate,
      });
      log(
        `${pool} @ ${(occ * 100).toFixed(1)} % (${bound} bound, opened in ${openMs.toFixed(0)} ms): ${fmtRate(rate)} pairs/s`,
      );
      await store.close();
    }
  }
  return { cells, loadMs, loadBound };
}

async function measureCycles(dir: string): Promise<{ cyclesPerSecond: number; rowsPerCycle: number }> {
  const path = join(dir, 'cycles.db');
  const { store, cloud } = await openCloud(path, '127.100.0.0/16');
  await cloud.createSubscription('bench');
  await cloud.createVnet('bench', {
    name: 'net',
    addressSpace: ['127.16.0.0/16'],
    subnets: [{ name: 's', cidr: '127.16.0.0/16' }],
  });
  await cloud.createService('bench', { name: 'svc', vnet: 'net' });
  const VMS = 20;
  for (let i = 0; i < VMS; i++) await cloud.createVm('svc', { name: `vm${i}`, subnet: 's' });
  const rates: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < CYCLE_MS) {
      const ref = { service: 'svc', vm: `vm${n % VMS}` };
      await cloud.vmOperation(ref, 'deallocate');
      await cloud.vmOperation(ref, 'start');
      n++;
    }
    rates.push((n / (performance.now() - t0)) * 1000);
  }
  // Rows written per cycle, from SQLite's own counter over a separate short run.
  const t = store.raw.prepare('select total_changes() as c');
  const c0 = (t.get() as { c: number }).c;
  const N = 200;
  for (let n = 0; n < N; n++) {
    const ref = { service: 'svc', vm: `vm${n % VMS}` };
    await cloud.vmOperation(ref, 'deallocate');
    await cloud.vmOperation(ref, 'start');
  }
  const rowsPerCycle = ((t.get() as { c: number }).c - c0) / N;
  await store.close();
  return { cyclesPerSecond: median(rates), rowsPerCycle };
}

export async function run(_args: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-'));
  const log = (s: string) => console.error(`  ${s}`);
  try {
    console.error('ipam store: allocate+release through SQLite…');
    const pairs = await measurePairs(dir, log);
    console.error('ipam store: VM deallocate+start cycles…');
    const cycles = await measureCycles(dir);
    log(
      `${fmtRate(cycles.cyclesPerSecond)} cycles/s, ${cycles.rowsPerCycle.toFixed(1)} rows written per cycle`,
    );
    const results = {
      date: new Date().toISOString(),
      machine: machine(),
      seed: SEED,
      pairs: pairs.cells,
      load: { boundAddresses: pairs.loadBound, openMs: pairs.loadMs },
      cycles: { ...cycles, target: TARGET_CYCLES_PER_S, met: cycles.cyclesPerSecond >= TARGET_CYCLES_PER_S },
    };
    await saveJson('ipam', 'store', results);
    const table = [
      '| pool | usable | bound | occupancy | pairs/s (2 transactions each) |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...pairs.cells.map(
        (c) =>
          `| ${c.pool} | ${c.usable.toLocaleString('en')} | ${c.bound.toLocaleString('en')} | ${(c.occupancy * 100).toFixed(1)} % | ${fmtRate(c.pairsPerSecond)} |`,
      ),
    ].join('\n');
    const body = [
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}; SQLite in WAL mode, synchronous=NORMAL; median of ${REPEATS} runs.`,
      '',
      'One pair = a transaction that draws an address and binds it under the UNIQUE key, then a transaction that releases it.',
      '',
      table,
      '',
      `Opening a state whose /8 pool holds ${pairs.loadBound.toLocaleString('en')} bound addresses (index rebuilt from the store): **${(pairs.loadMs / 1000).toFixed(2)} s**.`,
      '',
      `VM deallocate + start cycles through the lifecycle and the store: **${fmtRate(cycles.cyclesPerSecond)}/s** (target ${fmtRate(TARGET_CYCLES_PER_S)}/s: ${results.cycles.met ? 'met' : '**not met**'}); ${cycles.rowsPerCycle.toFixed(1)} rows written per cycle.`,
    ].join('\n');
    await saveSection('ipam:store', 'IPAM and lifecycle through the SQLite store', body);
    console.log(`## ipam: store\n\n${body}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
