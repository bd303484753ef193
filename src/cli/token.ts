/**
 * `vipdip token create|list|revoke`: the operator's subscription tokens. A token is shown once,
 * when it is made, and stored by the server only as a hash.
 */
import type { Command } from 'commander';
import { connect, path, stateOption } from './client.ts';
import { outputOption, print, table } from './output.ts';

interface TokenOptions {
  subscription: string;
  output: string;
  state?: string;
}

interface TokenInfo {
  name: string;
  subscription: string | null;
  createdAt: string;
}

export function registerToken(program: Command): void {
  const token = program.command('token').description('API tokens of subscriptions (operator)');

  stateOption(token.command('create'))
    .description('make a token that sees only one subscription; it is printed once, here')
    .argument('<name>', 'a name for the token, to revoke it by')
    .requiredOption('-s, --subscription <name>', 'the subscription it acts in')
    .addOption(outputOption())
    .action(async (name: string, opts: TokenOptions) => {
      const made = await connect(opts).post<{ name: string; subscription: string; token: string }>(
        path`/v1/subscriptions/${opts.subscription}/tokens`,
        { name },
      );
      // The token alone on stdout, so that TOKEN=$(vipdip token create …) works.
      await print(opts.output, made, () => `${made.token}\n`);
      if (opts.output === 'table' && process.stderr.isTTY) {
        process.stderr.write(
          `token ${made.name} of subscription ${made.subscription}: keep it now, it is not shown again\n`,
        );
      }
    });

  stateOption(token.command('list'))
    .description('list tokens (names and scopes, never the tokens themselves)')
    .addOption(outputOption())
    .action(async (opts: Omit<TokenOptions, 'subscription'>) => {
      const list = await connect(opts).get<TokenInfo[]>('/v1/tokens');
      await print(opts.output, list, () =>
        table(
          ['NAME', 'SUBSCRIPTION', 'CREATED'],
          list.map((t) => [t.name, t.subscription ?? '(operator)', t.createdAt]),
        ),
      );
    });

  stateOption(token.command('revoke'))
    .description('revoke the tokens of that name in a subscription')
    .argument('<name>', 'the token name')
    .requiredOption('-s, --subscription <name>', 'its subscription')
    .action(async (name: string, opts: TokenOptions) => {
      await connect(opts).delete(path`/v1/subscriptions/${opts.subscription}/tokens/${name}`);
      process.stdout.write(`token ${name} of subscription ${opts.subscription} revoked\n`);
    });
}
