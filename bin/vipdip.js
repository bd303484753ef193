#!/usr/bin/env node
// The installed entry point: registers tsx so the TypeScript sources run as they are, then hands over.
import { register } from 'tsx/esm/api';

register();
if (process.argv[2] === 'workload') {
  // A built-in workload (whoami, echo) the agent starts for a VM: straight to it, without the CLI,
  // so that a workload starts in the time Node and tsx take, not the time the whole command takes.
  const { runBuiltin } = await import('../src/agent/builtins/main.ts');
  const code = await runBuiltin(process.argv.slice(3));
  if (code !== 0) process.exit(code);
} else {
  const { main } = await import('../src/cli/main.ts');
  process.exitCode = await main(process.argv);
}
