#!/usr/bin/env node
// The installed entry point: runs the compiled code in dist/lib (npm run build makes it; npm ci and
// npm pack run that build).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const verb = process.argv[2];
// Stack traces point at the .ts lines for --debug and for the servers, whose internal errors are
// logged with their stacks; a quick client call does not pay for reading the maps.
if (process.argv.includes('--debug') || ['up', 'serve', 'agent', 'fsck'].includes(verb ?? '')) {
  process.setSourceMapsEnabled(true);
}
if (existsSync(join(root, 'src'))) {
  // A checkout: say so when dist/ is older than the sources (the tests build it themselves).
  const { staleBuild } = await import('./dev-check.js');
  const stale = staleBuild(root);
  if (stale === 'missing') {
    process.stderr.write('vipdip: not built: run npm run build (npm ci does)\n');
    process.exit(1);
  }
  if (stale !== undefined) {
    process.stderr.write(`vipdip: warning: dist/lib is older than ${stale}; run npm run build:lib\n`);
  }
}
if (verb === 'workload') {
  // A built-in workload (whoami, echo) the agent starts for a VM: straight to it, without the CLI,
  // so that a workload starts in the time Node takes, not the time the whole command takes.
  const { runBuiltin } = await import('../dist/lib/agent/builtins/main.js');
  const code = await runBuiltin(process.argv.slice(3));
  if (code !== 0) process.exit(code);
} else {
  const { main } = await import('../dist/lib/cli/main.js');
  process.exitCode = await main(process.argv);
}
