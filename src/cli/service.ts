/**
 * `vipdip service delete NAME [-s SUB]`: deletes a cloud service and all its VMs. Its VIP goes back
 * to the pool, unless it is a reserved IP, which survives for the next service.
 */
import type { Command } from 'commander';
import type { Service } from '../core/api-shapes.ts';
import { connect, path, stateOption } from './client.ts';
import { CliError } from './errors.ts';

interface ServiceOptions {
  subscription?: string;
  state?: string;
}

export function registerService(program: Command): void {
  const service = program.command('service').description('cloud services');

  stateOption(service.command('delete'))
    .description('delete a cloud service with all its VMs (a reserved IP survives)')
    .argument('<name>', 'the cloud service')
    .option('-s, --subscription <name>', 'the subscription it must belong to')
    .action(async (name: string, opts: ServiceOptions) => {
      const c = connect(opts);
      const svc = await c.get<Service>(path`/v1/services/${name}`);
      if (opts.subscription !== undefined && svc.subscription !== opts.subscription) {
        throw new CliError(
          `not found: cloud service ${name} does not exist in subscription ${opts.subscription}`,
        );
      }
      await c.delete(path`/v1/services/${name}`);
      const kept = svc.reservedIp !== null ? `; reserved IP ${svc.reservedIp} (${svc.vip ?? '-'}) kept` : '';
      process.stdout.write(
        `cloud service ${name} deleted with ${svc.vms.length} VM${svc.vms.length === 1 ? '' : 's'}${kept}\n`,
      );
    });
}
