/**
 * Before and after, interleaved: VM deallocate+start cycles in process through SQLite (as
 * `npm run bench -- ipam` measures them), run alternately against this checkout and another one
 * (an older commit unpacked elsewhere), each round in a fresh process, so that a busy machine slows
 * both alike. Prints each round and the medians, and their ratio.
 *
 *   git archive <commit> | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/
 *   node --import tsx bench/ipam-cycles-compare.ts /tmp/base [ROUNDS] [MS] [LOOPS]
 *
 * A child (`--child ROOT MS LOOPS`) opens a cloud of 20 VMs in one service from ROOT's sources, warms
 * up with 300 cycles, then counts cycles for MS milliseconds; it prints one JSON line. LOOPS (1 by
 * default) cycles run concurrently, each on VMs of its own (20 VMs, or 2 per loop if more): with one
 * loop a store can never commit two operations together, with 16 it can (group commit).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type * as CoreModule from '../src/core/index.ts';
import type * as LifecycleModule from '../src/lifecycle/index.ts';
import type * as StoreModule from '../src/store/index.ts';
import { ROOT, median } from './report.ts';

const VMS_MIN = 20;
const WARMUP_CYCLES = 300;

async function child(root: string, ms: number, loops: number): Promise<void> {
  const VMS = Math.max(VMS_MIN, 2 * loops);
  const core = (await import(join(root, 'src/core/index.ts'))) as typeof CoreModule;
  const { Cloud } = (await import(join(root, 'src/lifecycle/index.ts'))) as typeof LifecycleModule;
  const { SqliteStore } = (await import(join(root, 'src/store/index.ts'))) as typeof StoreModule;
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-cycles-'));
  const store = await SqliteStore.open(join(dir, 'cycles.db'));
  const cloud = await Cloud.open(store, {
    random: new core.SeededRandom(1),
    clock: core.steppingClock(),
    defaultPublicPools: ['127.100.0.0/16'],
  });
  try {
    await cloud.createSubscription('bench');
    await cloud.createVnet('bench', {
      name: 'net',
      addressSpace: ['127.16.0.0/16'],
      subnets: [{ name: 's', cidr: '127.16.0.0/16' }],
    });
    await cloud.createService('bench', { name: 'svc', vnet: 'net' });
    for (let i = 0; i < VMS; i++) await cloud.createVm('svc', { name: `vm${i}`, subnet: 's' });
    const perLoop = Math.floor(VMS / loops);
    const cycle = async (n: number, loop = 0) => {
      const ref = { service: 'svc', vm: `vm${loop * perLoop + (n % perLoop)}` };
      await cloud.vmOperation(ref, 'deallocate');
      await cloud.vmOperation(ref, 'start');
    };
    for (let n = 0; n < WARMUP_CYCLES; n++) await cycle(n);
    const s0 = store.statements;
    const t0 = performance.now();
    let n = 0;
    await Promise.all(
      Array.from({ length: loops }, async (_, loop) => {
        for (let k = 0; performance.now() - t0 < ms && n < 1_000_000; k++) {
          await cycle(k, loop);
          n++;
        }
      }),
    );
    const rate = (n / (performance.now() - t0)) * 1000;
    console.log(JSON.stringify({ cyclesPerSecond: rate, statementsPerCycle: (store.statements - s0) / n }));
  } finally {
    cloud.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function main(base: string, rounds: number, ms: number, loops: number): void {
  const roots = { before: resolve(base), after: ROOT };
  const rates: Record<'before' | 'after', number[]> = { before: [], after: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    for (const which of order) {
      const out = execFileSync(
        process.execPath,
        [
          '--import',
          'tsx',
          join(ROOT, 'bench/ipam-cycles-compare.ts'),
          '--child',
          roots[which],
          String(ms),
          String(loops),
        ],
        { cwd: ROOT, encoding: 'utf8', timeout: 120_000 },
      );
      const x = JSON.parse(out.trim().split('\n').pop()!) as {
        cyclesPerSecond: number;
        statementsPerCycle: number;
      };
      rates[which].push(x.cyclesPerSecond);
      console.log(
        `round ${r + 1} ${which}: ${x.cyclesPerSecond.toFixed(0)} cycles/s, ${x.statementsPerCycle.toFixed(1)} statements/cycle`,
      );
    }
  }
  const b = median(rates.before);
  const a = median(rates.after);
  console.log(
    `${loops} loop(s): median before ${b.toFixed(0)}/s, after ${a.toFixed(0)}/s: ${(a / b).toFixed(2)}×`,
  );
}

const args = process.argv.slice(2);
if (args[0] === '--child') await child(args[1]!, Number(args[2] ?? 1500), Number(args[3] ?? 1));
else if (args[0] === undefined) {
  console.error('usage: bench/ipam-cycles-compare.ts OTHER_CHECKOUT [ROUNDS] [MS] [LOOPS]');
  process.exitCode = 2;
} else main(args[0], Number(args[1] ?? 5), Number(args[2] ?? 1500), Number(args[3] ?? 1));
