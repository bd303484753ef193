/**
 * The benchmark dispatcher: `npm run bench` runs every benchmark, `npm run bench -- NAME [ARGS…]` one.
 * Each benchmark is a module exporting `run(args)`; it is imported only when it is chosen.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface Benchmark {
  run(args: string[]): Promise<void>;
}

const BENCHMARKS: Readonly<Record<string, () => Promise<Benchmark>>> = {
  api: () => import('./api.ts'),
  ipam: async () => {
    const [memory, store] = [await import('./ipam.ts'), await import('./ipam-store.ts')];
    return { run: async (args) => (await memory.run(args), await store.run(args)) };
  },
  dns: () => import('./dns.ts'),
  dataplane: () => import('./dataplane.ts'),
  'dataplane-netns': () => import('./dataplane-netns.ts'),
  chaos: () => import('./chaos.ts'),
  hostile: () => import('./hostile.ts'),
  cli: () => import('./cli.ts'),
  faults: () => import('./faults.ts'),
};

/**
 * Memory figures need a collection before each reading. `npm run bench` starts node without
 * --expose-gc, so the flag is set at run time and `gc` fetched from a fresh context, where V8 installs it.
 */
function exposeGc(): void {
  if (typeof globalThis.gc === 'function') return;
  setFlagsFromString('--expose-gc');
  globalThis.gc = runInNewContext('gc') as typeof globalThis.gc;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name !== undefined && !Object.hasOwn(BENCHMARKS, name)) {
    console.error(`bench: unknown benchmark "${name}" (known: ${Object.keys(BENCHMARKS).join(', ')})`);
    return 2;
  }
  exposeGc();
  const names = name === undefined ? Object.keys(BENCHMARKS) : [name];
  for (const n of names) {
    const load = BENCHMARKS[n];
    if (load === undefined) continue;
    const bench = await load();
    await bench.run(args);
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
