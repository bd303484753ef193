/**
 * IPAM index benchmark ("memory": the in-memory AddressRange, no store).
 *
 * For public pools of /24, /16 and /8 at 0, 50, 90 and 99 % occupancy it measures allocate+release
 * pairs per second with the random and the sequential policy, and the memory the index holds. One
 * range per size is filled in steps (0 → 50 → 90 → 99 %) with random allocations: a uniform random
 * subset stays one when it grows, so this is the same as filling a fresh range to each level, and it
 * saves re-filling a /8 three times. Fills are timed apart from the measured loop.
 *
 * Results go to bench/results/ipam.json under `memory` (other keys are kept) and to the
 * `ipam:memory` section of BENCHMARKS.md.
 */
import { SeededRandom, parseCidr } from '../src/core/index.ts';
import { AddressRange, POOL_RESERVATION, type AllocationPolicy } from '../src/ipam/index.ts';
import { machine, saveJson, saveSection } from './report.ts';

const SEED = 20260101;
const POOLS = ['127.0.0.0/24', '127.0.0.0/16', '127.0.0.0/8'] as const;
const OCCUPANCIES = [0, 0.5, 0.9, 0.99] as const;
/**
 * Per cell and policy: REPEATS timed runs, each stopping at whichever bound comes first; the median
 * is reported, so one descheduling on this shared machine does not make a cell.
 */
const LIMITS: Record<AllocationPolicy, { maxPairs: number; maxMs: number }> = {
  random: { maxPairs: 4_000_000, maxMs: 250 },
  sequential: { maxPairs: 2_000_000, maxMs: 100 },
};
const REPEATS = 5;
const WARMUP_PAIRS = 65_536;
const CHUNK = 8_192;

const TARGET_PAIRS_PER_S = 1_000_000;
const TARGET_RATIO = 0.5;

interface Cell {
  pool: string;
  usable: number;
  occupancy: number;
  bound: number;
  /** Random allocations made to bring the range from the previous level to this one, and their rate. */
  fill: { allocations: number; seconds: number };
  random: Rate;
  sequential: Rate;
  memory: {
    /** Typed-array bytes the index reserved (process.memoryUsage().arrayBuffers delta). */
    indexBytes: number;
    /** Resident set growth since before the range was built: the pages the index has touched. */
    rssBytes: number;
    heapUsedBytes: number;
  };
}

interface Rate {
  pairs: number;
  seconds: number;
  /** The median of the repeats. */
  pairsPerSecond: number;
  repeats: number[];
}

interface MemoryResults {
  date: string;
  machine: { node: string; cpu: string; cpus: number; memoryBytes: number; gc: boolean };
  seed: number;
  unit: string;
  cells: Cell[];
  ratio: { of: string; value: number; target: number };
  targets: { pairsPerSecond: number; met: boolean; ratioMet: boolean };
}

function collect(): void {
  globalThis.gc?.();
  globalThis.gc?.();
}

function seconds(fromNs: bigint): number {
  return Number(process.hrtime.bigint() - fromNs) / 1e9;
}

/**
 * The timed unit. A function called many times rather than a loop inside `measure`, so V8 optimises
 * it as a whole instead of on-stack-replacing whichever loop happens to be hot first.
 */
function pairs(range: AddressRange, policy: AllocationPolicy, random: SeededRandom): void {
  for (let i = 0; i < CHUNK; i++) range.release(range.allocate(policy, random));
}

/** Allocate+release pairs per second; the range is left as it was found. */
function measure(range: AddressRange, policy: AllocationPolicy, random: SeededRandom): Rate {
  const { maxPairs, maxMs } = LIMITS[policy];
  for (let i = 0; i < WARMUP_PAIRS; i += CHUNK) pairs(range, policy, random);
  const total = { pairs: 0, seconds: 0 };
  const repeats: number[] = [];
  for (let k = 0; k < REPEATS; k++) {
    let done = 0;
    let elapsed = 0;
    const t0 = process.hrtime.bigint();
    while (done < maxPairs) {
      pairs(range, policy, random);
      done += CHUNK;
      elapsed = seconds(t0);
      if (elapsed * 1000 >= maxMs) break;
    }
    repeats.push(done / elapsed);
    total.pairs += done;
    total.seconds += elapsed;
  }
  const sorted = [...repeats].sort((a, b) => a - b);
  return { ...total, pairsPerSecond: sorted[Math.floor(sorted.length / 2)]!, repeats };
}

/**
 * Brings both policies' code paths to their optimised state before anything is timed, so the
 * first cell does not pay for compilation or for a deoptimisation when the other policy first runs.
 */
function warmUp(random: SeededRandom): void {
  // The same /8 as the measured pools: addresses above 2^30 are not small integers to V8, and a
  // warm-up on 10/8 would teach it field representations the measured ranges then break.
  const range = new AddressRange('warm-up', parseCidr('127.0.0.0/20'), POOL_RESERVATION);
  for (let i = 0; i < range.usable / 2; i++) range.allocate('random', random);
  for (let round = 0; round < 3; round++) {
    for (const policy of ['random', 'sequential'] as const) {
      for (let i = 0; i < 200_000; i += CHUNK) pairs(range, policy, random);
    }
  }
}

function measurePool(cidr: string, random: SeededRandom, log: (line: string) => void): Cell[] {
  collect();
  const before = process.memoryUsage();
  const range = new AddressRange(`public pool ${cidr}`, parseCidr(cidr), POOL_RESERVATION);
  const cells: Cell[] = [];
  for (const occupancy of OCCUPANCIES) {
    const target = Math.floor(range.usable * occupancy);
    const toFill = target - range.boundCount;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < toFill; i++) range.allocate('random', random);
    const fillSeconds = seconds(t0);
    collect();
    const after = process.memoryUsage();
    const memory = {
      indexBytes: after.arrayBuffers - before.arrayBuffers,
      rssBytes: after.rss - before.rss,
      heapUsedBytes: after.heapUsed - before.heapUsed,
    };
    const rnd = measure(range, 'random', random);
    const seq = measure(range, 'sequential', random);
    if (range.boundCount !== target) throw new Error(`${cidr}: the measured loops leaked addresses`);
    const cell: Cell = {
      pool: cidr.slice(cidr.indexOf('/')),
      usable: range.usable,
      occupancy,
      bound: range.boundCount,
      fill: { allocations: toFill, seconds: fillSeconds },
      random: rnd,
      sequential: seq,
      memory,
    };
    log(
      `${cell.pool} @ ${pct(occupancy)}: random ${fmtRate(rnd.pairsPerSecond)}/s, ` +
        `sequential ${fmtRate(seq.pairsPerSecond)}/s, RSS growth ${fmtBytes(memory.rssBytes)}`,
    );
    cells.push(cell);
  }
  return cells;
}

const fmtMs = (ms: number) => (ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`);
const pct = (x: number) => `${Math.round(x * 100)} %`;
const fmtRate = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(0)} k`);
function fmtBytes(b: number): string {
  const sign = b < 0 ? '−' : '';
  const a = Math.abs(b);
  if (a >= 2 ** 20) return `${sign}${(a / 2 ** 20).toFixed(1)} MiB`;
  if (a >= 2 ** 10) return `${sign}${(a / 2 ** 10).toFixed(0)} KiB`;
  return `${sign}${a} B`;
}

function table(r: MemoryResults): string {
  const rows = [
    '| pool | usable | occupancy | random pairs/s | sequential pairs/s | fill time (untimed part) | index (typed arrays) | RSS growth |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const c of r.cells) {
    rows.push(
      `| ${c.pool} | ${c.usable.toLocaleString('en-US')} | ${pct(c.occupancy)} | ` +
        `${fmtRate(c.random.pairsPerSecond)} | ${fmtRate(c.sequential.pairsPerSecond)} | ` +
        `${c.fill.allocations > 0 ? fmtMs(c.fill.seconds * 1000) : '–'} | ` +
        `${fmtBytes(c.memory.indexBytes)} | ${fmtBytes(c.memory.rssBytes)} |`,
    );
  }
  return rows.join('\n');
}

function summary(r: MemoryResults): string {
  const m = r.machine;
  return [
    `Measured ${r.date.slice(0, 10)} on ${m.cpus} × ${m.cpu}, Node ${m.node}, seed ${r.seed}` +
      `${m.gc ? '' : ' (no gc: memory figures are rough)'}.`,
    `One op = one allocate + one release on a public pool (network and broadcast reserved); ` +
      `median of ${REPEATS} runs. The fill to each occupancy (random allocations from the previous ` +
      `level) is timed apart. RSS growth is since before the range was built; for the small pools it ` +
      `is heap noise.`,
    '',
    table(r),
    '',
    `Ratio ${r.ratio.of}: **${r.ratio.value.toFixed(2)}** (target ≥ ${r.ratio.target}). ` +
      `Every random cell ≥ ${fmtRate(r.targets.pairsPerSecond)}/s: **${r.targets.met ? 'yes' : 'no'}**.`,
  ].join('\n');
}

export async function run(_args: string[]): Promise<void> {
  const random = new SeededRandom(SEED);
  const log = (line: string) => console.error(`  ${line}`);
  console.error('ipam memory: measuring the in-memory index…');
  const t0 = process.hrtime.bigint();
  warmUp(random);
  const cells: Cell[] = [];
  for (const cidr of POOLS) {
    cells.push(...measurePool(cidr, random, log));
    collect();
  }
  const rate = (pool: string, occupancy: number) =>
    cells.find((c) => c.pool === pool && c.occupancy === occupancy)?.random.pairsPerSecond ?? Number.NaN;
  const ratio = rate('/8', 0.99) / rate('/24', 0);
  const results: MemoryResults = {
    date: new Date().toISOString(),
    machine: machine(),
    seed: SEED,
    unit: 'pairs/s: one allocate plus one release',
    cells,
    ratio: { of: 'random /8 @ 99 % : /24 @ 0 %', value: ratio, target: TARGET_RATIO },
    targets: {
      pairsPerSecond: TARGET_PAIRS_PER_S,
      met: cells.every((c) => c.random.pairsPerSecond >= TARGET_PAIRS_PER_S),
      ratioMet: ratio >= TARGET_RATIO,
    },
  };
  await saveJson('ipam', 'memory', results);
  await saveSection('ipam:memory', 'IPAM index: allocation rate and memory', summary(results));
  console.log(`## ipam: memory\n\n${summary(results)}\n`);
  console.error(`ipam memory: done in ${seconds(t0).toFixed(1)} s`);
}
