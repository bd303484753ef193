import type { Command } from 'commander';
import { fsck, formatFinding } from '../lifecycle/index.ts';
import { openStore } from '../main.ts';

export function registerFsck(program: Command): void {
  program
    .command('fsck')
    .description('check invariants I1–I6 against a state; exit 0 when clean, 1 with findings')
    .option('--state <dir>', 'state directory', '.vipdip')
    .option(
      '--store <url>',
      'store URL: sqlite:PATH, PATH or postgres://… (overrides --state and VIPDIP_STORE)',
    )
    .action(async (opts: { state: string; store?: string }) => {
      const { store } = await openStore({
        stateDir: opts.state,
        ...(opts.store ? { store: opts.store } : {}),
      });
      try {
        const tty = process.stderr.isTTY;
        // One snapshot: replicas may be writing meanwhile, and every check must see the same state.
        const findings = await store.snapshot((r) =>
          fsck(r, tty ? (step) => process.stderr.write(`\rchecking ${step}…\x1b[K`) : undefined),
        );
        if (tty) process.stderr.write('\r\x1b[K');
        for (const f of findings) process.stdout.write(`${formatFinding(f)}\n`);
        if (findings.length === 0) process.stdout.write('clean: invariants I1–I6 hold\n');
        process.exitCode = findings.length === 0 ? 0 : 1;
      } finally {
        await store.close();
      }
    });
}
