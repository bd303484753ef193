/**
 * `vipdip reserved-ip create|delete|associate|disassociate|reserve`: subscription-level public
 * addresses that survive deallocation and deletion of the service they serve.
 */
import type { Command } from 'commander';
import type { ReservedIp, Service } from '../core/api-shapes.ts';
import { connect, path, stateOption } from './client.ts';
import { cell, outputOption, print } from './output.ts';

interface RipOptions {
  subscription: string;
  output: string;
  state?: string;
}

const ripPath = (sub: string, name: string) => path`/v1/subscriptions/${sub}/reserved-ips/${name}`;

export function registerReservedIp(program: Command): void {
  const rip = program
    .command('reserved-ip')
    .description('reserved IPs: named public addresses that outlive deallocation and deletion');
  const verb = (name: string, about: string) =>
    stateOption(rip.command(name))
      .description(about)
      .requiredOption('-s, --subscription <name>', 'the subscription of the reserved IP')
      .addOption(outputOption());

  verb('create', 'reserve a public address under a name')
    .argument('<name>', 'its name')
    .action(async (name: string, opts: RipOptions) => {
      const made = await connect(opts).post<ReservedIp>(
        path`/v1/subscriptions/${opts.subscription}/reserved-ips`,
        { name },
      );
      await print(opts.output, made, () => `reserved IP ${made.subscription}/${made.name} ${made.address}\n`);
    });

  verb('delete', 'give a reserved IP back to the pool (it must not be associated)')
    .argument('<name>', 'its name')
    .action(async (name: string, opts: RipOptions) => {
      await connect(opts).delete(ripPath(opts.subscription, name));
      // 204: no body to print as JSON or YAML.
      if (opts.output === 'table') process.stdout.write(`reserved IP ${opts.subscription}/${name} deleted\n`);
    });

  verb('associate', "make a reserved IP a cloud service's VIP")
    .argument('<name>', 'the reserved IP')
    .argument('<service>', 'the cloud service')
    .action(async (name: string, service: string, opts: RipOptions) => {
      const svc = await connect(opts).post<Service>(`${ripPath(opts.subscription, name)}/associate`, {
        service,
      });
      await print(
        opts.output,
        svc,
        () => `reserved IP ${opts.subscription}/${name} associated with ${svc.name}: vip ${cell(svc.vip)}\n`,
      );
    });

  verb('disassociate', 'take a reserved IP off its service (which draws a new VIP if it needs one)')
    .argument('<name>', 'the reserved IP')
    .action(async (name: string, opts: RipOptions) => {
      const c = connect(opts);
      const service =
        opts.output === 'table' ? (await c.get<ReservedIp>(ripPath(opts.subscription, name))).service : null;
      const after = await c.post<ReservedIp>(`${ripPath(opts.subscription, name)}/disassociate`);
      await print(opts.output, after, async () => {
        const line = `reserved IP ${after.subscription}/${after.name} (${after.address}) disassociated`;
        if (service === null) return `${line}\n`;
        const svc = await c.get<Service>(path`/v1/services/${service}`);
        return `${line} from ${service}; ${service} vip now ${cell(svc.vip)}\n`;
      });
    });

  // Reserving in place names the service, not the subscription: the service knows its own.
  stateOption(rip.command('reserve'))
    .description("turn a cloud service's current VIP into a reserved IP, in place (the address stays)")
    .argument('<service>', 'the cloud service')
    .argument('<name>', 'the name of the new reserved IP')
    .addOption(outputOption())
    .action(async (service: string, name: string, opts: Omit<RipOptions, 'subscription'>) => {
      const made = await connect(opts).post<ReservedIp>(path`/v1/services/${service}/reserve-vip`, {
        name,
      });
      await print(
        opts.output,
        made,
        () =>
          `reserved IP ${made.subscription}/${made.name} ${made.address} now holds the VIP of ${service}\n`,
      );
    });
}
