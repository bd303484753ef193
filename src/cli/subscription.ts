/** `vipdip subscription create|delete NAME`: tenants, made and removed by the operator. */
import type { Command } from 'commander';
import type { Subscription } from '../core/api-shapes.ts';
import { connect, path, stateOption } from './client.ts';
import { outputOption, print } from './output.ts';

interface SubscriptionOptions {
  output: string;
  state?: string;
}

export function registerSubscription(program: Command): void {
  const sub = program.command('subscription').description('subscriptions, the tenants (operator)');

  stateOption(sub.command('create'))
    .description('make a subscription')
    .argument('<name>', 'its name')
    .addOption(outputOption())
    .action(async (name: string, opts: SubscriptionOptions) => {
      const made = await connect(opts).post<Subscription>('/v1/subscriptions', { name });
      await print(opts.output, made, () => `subscription ${made.name} created\n`);
    });

  stateOption(sub.command('delete'))
    .description('delete a subscription (it must hold nothing)')
    .argument('<name>', 'its name')
    .action(async (name: string, opts: SubscriptionOptions) => {
      await connect(opts).delete(path`/v1/subscriptions/${name}`);
      process.stdout.write(`subscription ${name} deleted\n`);
    });
}
