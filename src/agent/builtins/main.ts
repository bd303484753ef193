/** `vipdip workload NAME`: runs a built-in workload in this process (the agent starts it so). */
import { runEcho } from './echo.ts';
import { runWhoami } from './whoami.ts';

export async function runBuiltin(args: readonly string[]): Promise<number> {
  const name = args[0];
  try {
    if (name === 'whoami') await runWhoami();
    else if (name === 'echo') await runEcho();
    // Not a tenant's workload: the netns driver's prober, which it starts inside its world.
    // Not an image: many VMs' built-ins in one process (host.ts), as the agent starts it.
    else if (name === 'shared-host') (await import('./host.ts')).runSharedHost(args.slice(1));
    else if (name === 'netns-prober')
      await (await import('../../dataplane/netns/probe-helper.ts')).runProbeHelper();
    else {
      process.stderr.write(
        `vipdip workload: unknown built-in ${JSON.stringify(name)} (known: whoami, echo)\n`,
      );
      return 2;
    }
  } catch (e) {
    process.stderr.write(`vipdip workload ${name}: ${(e as Error).message}\n`);
    return 1;
  }
  return 0;
}
