// Runs every *.test.ts under src/ and test/ with node's own test runner through tsx.
// Node 20's runner takes no globs, so the files are listed here.
// Tests spawn bin/vipdip.js, which runs the compiled dist/lib: it is rebuilt first whenever a source
// is newer (a fraction of a second), so no test ever exercises a stale build.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { staleBuild } from '../bin/dev-check.js';
import { buildLib } from './build.mjs';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filter = process.argv.slice(2);
let files = [...walk('src', []), ...walk('test', [])].sort();
if (filter.length > 0) files = files.filter((f) => filter.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (staleBuild(root) !== undefined) await buildLib();
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
