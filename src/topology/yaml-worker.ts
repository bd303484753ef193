/**
 * YAML parsing off the main thread. The `yaml` library parses about 1 MB per second on this machine
 * (a 10,000-VM topology, 0.58 MB, took 0.7 s; 1 MiB of `- {}` lines 1.9 s), and the main thread
 * also carries the API, DNS and the data plane: a tenant's apply must not hold them. One worker
 * parses documents one after another, with its own heap and stack limits, so a hostile document can
 * at worst make that worker fail, never the server.
 *
 * The worker is inline code (no second entry file to bundle and find at run time) that loads the same
 * `yaml` package, by the absolute path this module resolves.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { VipdipError } from '../core/errors.ts';

/** A document that takes longer than this is given up on (the worker is restarted). */
export const YAML_PARSE_TIMEOUT_MS = 10_000;
const WORKER_HEAP_MB = 256;

const WORKER_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const { parse } = require(workerData.yaml);
// Counted here, so that an oversized document is never copied back to the main thread.
function tooMany(doc, max) {
  let n = 0;
  const stack = [doc];
  while (stack.length > 0) {
    const v = stack.pop();
    if (++n > max) return true;
    if (v !== null && typeof v === 'object') for (const k in v) stack.push(v[k]);
  }
  return false;
}
parentPort.on('message', ({ id, text }) => {
  try {
    const doc = parse(text, { maxAliasCount: 100 });
    if (tooMany(doc, workerData.maxValues)) {
      parentPort.postMessage({ id, ok: false, message: 'it holds more than ' + workerData.maxValues + ' values' });
      return;
    }
    parentPort.postMessage({ id, ok: true, doc });
  } catch (e) {
    const message = e instanceof RangeError
      ? 'the document nests too deeply'
      : String((e && e.message) || e).split('\\n')[0];
    parentPort.postMessage({ id, ok: false, message });
  }
});
`;

interface Pending {
  ok: (doc: unknown) => void;
  fail: (e: Error) => void;
  timer: NodeJS.Timeout;
}

type Reply = { id: number; ok: true; doc: unknown } | { id: number; ok: false; message: string };

export class YamlParser {
  /** @param maxValues the most values (mappings, lists, scalars) a document may hold. */
  constructor(private readonly maxValues: number) {}

  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  /** Parses one document; a syntax error or a worker failure is an INVALID_ARGUMENT naming it. */
  parse(text: string): Promise<unknown> {
    const w = this.ensure();
    const id = this.nextId++;
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => {
        this.reset(new VipdipError('INVALID_ARGUMENT', 'the topology took too long to parse'));
      }, YAML_PARSE_TIMEOUT_MS);
      this.pending.set(id, { ok, fail, timer });
      w.postMessage({ id, text });
    });
  }

  /** Stops the worker; pending parses fail. */
  async close(): Promise<void> {
    const w = this.worker;
    this.reset(new VipdipError('UNAVAILABLE', 'the server is closing'));
    await w?.terminate();
  }

  private ensure(): Worker {
    if (this.worker !== undefined) return this.worker;
    const w = new Worker(WORKER_CODE, {
      eval: true,
      workerData: { yaml: createRequire(import.meta.url).resolve('yaml'), maxValues: this.maxValues },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB, stackSizeMb: 4 },
      stdout: false,
      stderr: false,
    });
    w.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.ok(m.doc);
      else
        p.fail(new VipdipError('INVALID_ARGUMENT', `the topology is not valid YAML or JSON: ${m.message}`));
    });
    // Out of heap, or killed on a timeout: everything it held fails; the next parse starts a new one.
    w.on('error', () => {
      if (this.worker === w)
        this.reset(new VipdipError('INVALID_ARGUMENT', 'the topology is too large to parse'));
    });
    w.on('exit', () => {
      if (this.worker === w)
        this.reset(new VipdipError('INVALID_ARGUMENT', 'the topology is too large to parse'));
    });
    w.unref();
    this.worker = w;
    return w;
  }

  private reset(e: Error): void {
    const w = this.worker;
    this.worker = undefined;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.fail(e);
    }
    this.pending.clear();
    void w?.terminate();
  }
}
