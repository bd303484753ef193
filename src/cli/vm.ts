/**
 * `vipdip vm start|stop|deallocate|restart|redeploy|delete SERVICE/VM [-s SUB]`: one lifecycle
 * operation, then the VM's state and addresses in one line, the way a person checks what changed:
 * `shop/web1 running dip 127.16.1.9 vip 127.100.3.4 host rack1-host2`.
 */
import type { Command } from 'commander';
import type { Service, Vm } from '../core/api-shapes.ts';
import { connect, path, stateOption, type Client } from './client.ts';
import { CliError } from './errors.ts';
import { parseVmRef } from './names.ts';
import { cell, outputOption, print } from './output.ts';

/** The operations of SPEC.md §2, in the order help lists them. */
export const VM_VERBS = ['start', 'stop', 'deallocate', 'restart', 'redeploy', 'delete'] as const;
type VmVerb = (typeof VM_VERBS)[number];

const ABOUT: Record<VmVerb, string> = {
  start: 'start a VM (a deallocated one draws a new DIP)',
  stop: 'stop a VM; it stays allocated and keeps its addresses',
  deallocate: 'stop and deallocate a VM, releasing its DIP (and the VIP with the last one)',
  restart: 'restart a running VM; it keeps its addresses',
  redeploy: 'move a VM to another host (its DIP is redrawn unless static)',
  delete: 'delete a VM',
};

interface VmOptions {
  subscription?: string;
  output: string;
  state?: string;
}

/** `shop/web1 running dip … vip … host …` (and the ILPIP when there is one). */
export function vmLine(vm: Vm, vip: string | null | undefined): string {
  return (
    `${vm.service}/${vm.name} ${vm.state} dip ${cell(vm.dip)} vip ${cell(vip)} host ${cell(vm.host)}` +
    (vm.ilpip !== null ? ` ilpip ${vm.ilpip}` : '')
  );
}

/** With -s, the service must belong to that subscription, checked before anything changes. */
async function checkService(c: Client, service: string, sub: string | undefined): Promise<void> {
  if (sub === undefined) return;
  const svc = await c.get<Service>(path`/v1/services/${service}`);
  if (svc.subscription !== sub) {
    throw new CliError(`not found: cloud service ${service} does not exist in subscription ${sub}`);
  }
}

/** One operation on one VM; returns the VM afterwards, or null once deleted. */
async function operate(c: Client, verb: VmVerb, ref: { service: string; vm: string }): Promise<Vm | null> {
  const vmPath = path`/v1/services/${ref.service}/vms/${ref.vm}`;
  if (verb === 'delete') {
    await c.delete(vmPath);
    return null;
  }
  return c.post<Vm>(`${vmPath}/${verb}`);
}

/**
 * Runs the operation on each VM in turn and stops at the first failure (what was done stays
 * done, and has been printed). A table prints a line per VM as it goes; JSON and YAML print the
 * API's VM (an array of them for several VMs; nothing for delete, whose answer has no body).
 */
async function run(verb: VmVerb, targets: string[], opts: VmOptions): Promise<void> {
  const refs = targets.map((t) => parseVmRef(t, `vm ${verb}`));
  const c = connect(opts);
  for (const service of new Set(refs.map((r) => r.service))) {
    await checkService(c, service, opts.subscription);
  }
  const results: Vm[] = [];
  for (const ref of refs) {
    const vm = await operate(c, verb, ref);
    if (vm !== null) results.push(vm);
    if (opts.output !== 'table') continue;
    // The VIP is the service's, and the operation may just have drawn or released it.
    const svc = await c.get<Service>(path`/v1/services/${ref.service}`);
    process.stdout.write(
      vm === null
        ? `${ref.service}/${ref.vm} deleted; ${ref.service} vip ${cell(svc.vip)}\n`
        : `${vmLine(vm, svc.vip)}\n`,
    );
  }
  if (opts.output !== 'table' && verb !== 'delete') {
    await print(opts.output, targets.length === 1 ? results[0] : results, () => '');
  }
}

export function registerVm(program: Command): void {
  const vm = program
    .command('vm')
    .description('VM operations: start, stop, deallocate, restart, redeploy, delete');
  for (const verb of VM_VERBS) {
    stateOption(vm.command(verb))
      .description(ABOUT[verb])
      .argument('<service/vm...>', 'the VM, as SERVICE/VM (several are done in turn)')
      .option('-s, --subscription <name>', 'the subscription the service must belong to')
      .addOption(outputOption())
      .action((targets: string[], opts: VmOptions) => run(verb, targets, opts));
  }
}
