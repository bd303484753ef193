// Builds the server, CLI and built-in workloads into dist/lib: two ES module entry points
// (cli/main.js, agent/builtins/main.js) and their shared chunks, bundled by esbuild with every
// npm dependency left external, and source maps to the .ts lines. Types are not checked here
// (`npm run typecheck` does that); this takes a fraction of a second, so the tests can always
// build first and never run a stale dist/.
//
// Why a bundle and not tsc's one-file-per-module output: both were measured (BENCHMARKS.md, CLI
// section): the bundle starts the CLI with less CPU (fewer files to find, read and link) and builds
// in about 0.1 s instead of about 8 s. The dashboard is built apart, by Vite, into dist/web.
import { build } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const OUT_DIR = join(root, 'dist/lib');

export async function buildLib() {
  rmSync(OUT_DIR, { recursive: true, force: true });
  mkdirSync(OUT_DIR, { recursive: true });
  await build({
    absWorkingDir: root,
    entryPoints: ['src/cli/main.ts', 'src/agent/builtins/main.ts'],
    outbase: 'src',
    outdir: OUT_DIR,
    entryNames: '[dir]/[name]',
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    // The server verbs are dynamic imports: each its own chunk, loaded only when it runs.
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Dependencies stay in node_modules, as npm installs them (better-sqlite3 is native).
    packages: 'external',
    sourcemap: true,
    // The maps point at ../../src; the sources themselves are not shipped.
    sourcesContent: false,
    logLevel: 'warning',
  });
  // What the bin's staleness check in a checkout compares against.
  writeFileSync(join(OUT_DIR, 'built'), `${new Date().toISOString()}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildLib();
