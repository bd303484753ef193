/** Where benchmarks put their figures: a key of bench/results/NAME.json and a section of BENCHMARKS.md. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const BENCHMARKS_FILE = join(ROOT, 'BENCHMARKS.md');

export function machine() {
  const cpu = cpus();
  return {
    node: process.versions.node,
    cpu: cpu[0]?.model.trim() ?? 'unknown',
    cpus: cpu.length,
    memoryBytes: totalmem(),
    gc: typeof globalThis.gc === 'function',
  };
}

/** Replaces one key of bench/results/FILE.json, keeping the others. */
export async function saveJson(file: string, key: string, value: unknown): Promise<void> {
  const path = join(ROOT, 'bench', 'results', `${file}.json`);
  let existing: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      existing = parsed as Record<string, unknown>;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify({ ...existing, [key]: value }, null, 2)}\n`);
}

const HEADER = `# Benchmarks

Figures come from a shared 2-core machine, so read them as orders of magnitude; rerun them on
yours before comparing. The raw numbers are in \`bench/results/\`.

To reproduce:

\`\`\`sh
npm run bench            # every benchmark
npm run bench -- ipam    # the IPAM index, in memory and through the SQLite store
npm run bench -- api [--store postgres]   # lifecycle operations through HTTP
\`\`\`
`;

/** Replaces the section between `<!-- ID:start -->` and `<!-- ID:end -->` of BENCHMARKS.md. */
export async function saveSection(id: string, title: string, body: string): Promise<void> {
  const start = `<!-- ${id}:start -->`;
  const end = `<!-- ${id}:end -->`;
  let doc: string;
  try {
    doc = await readFile(BENCHMARKS_FILE, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    doc = HEADER;
  }
  const section = `${start}\n## ${title}\n\n${body}\n${end}`;
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  doc =
    a >= 0 && b > a
      ? doc.slice(0, a) + section + doc.slice(b + end.length)
      : `${doc.trimEnd()}\n\n${section}\n`;
  // Formatted as `npm run lint` checks it, so a bench run never leaves the tree failing lint.
  const options = (await resolveConfig(BENCHMARKS_FILE)) ?? {};
  await writeFile(BENCHMARKS_FILE, await format(doc, { ...options, filepath: BENCHMARKS_FILE }));
}

export const fmtRate = (n: number) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : n.toFixed(0);
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
