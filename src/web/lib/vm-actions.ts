/**
 * The VM operations the dashboard offers, and in which states each one applies. This mirrors the
 * lifecycle's transition table (src/lifecycle/transitions.ts, which vm-actions.test.ts compares it
 * with); the server stays the judge, and a refusal it sends is shown like any other error.
 */
import type { Vm, VmState } from '../../core/api-shapes.ts';

export type VmAction = 'start' | 'stop' | 'deallocate' | 'restart' | 'redeploy' | 'delete';

export const VM_ACTIONS: readonly VmAction[] = [
  'start',
  'stop',
  'deallocate',
  'restart',
  'redeploy',
  'delete',
];

export const ACTION_STATES: Readonly<Record<VmAction, readonly VmState[]>> = {
  start: ['deallocated', 'stopped'],
  stop: ['running'],
  deallocate: ['running', 'stopped'],
  restart: ['running'],
  redeploy: ['running', 'stopped'],
  delete: ['running', 'stopped', 'deallocated'],
};

export const ACTION_LABELS: Readonly<Record<VmAction, string>> = {
  start: 'Start',
  stop: 'Stop',
  deallocate: 'Deallocate',
  restart: 'Restart',
  redeploy: 'Redeploy',
  delete: 'Delete',
};

export function canDo(action: VmAction, state: VmState): boolean {
  return ACTION_STATES[action].includes(state);
}

/**
 * What the confirmation says will happen to the addresses, per the rules R1–R8: the user confirms
 * knowing which address goes. `allocatedInService` counts the service's VMs that hold a DIP.
 */
export function consequence(
  action: VmAction,
  vm: Vm,
  service: { vip: string | null; reservedIp: string | null },
  allocatedInService: number,
): string {
  const name = `${vm.service}/${vm.name}`;
  const last = vm.state !== 'deallocated' && allocatedInService <= 1;
  const vipGoes =
    last && service.reservedIp === null && service.vip !== null
      ? ` It is the last allocated VM of ${vm.service}: the VIP ${service.vip} goes back to the pool.`
      : '';
  const dip = vm.dip ?? 'its DIP';
  switch (action) {
    case 'start':
      return vm.state === 'deallocated'
        ? `${name} gets a new DIP${vm.staticDip !== null ? ` (its static ${vm.staticDip})` : ', drawn at random from its subnet'}${service.vip === null ? `, and ${vm.service} gets a VIP` : ''}.`
        : `${name} runs again and keeps its DIP ${dip}.`;
    case 'stop':
      return `${name} stops but stays allocated: it keeps its DIP ${dip} and the VIP stays.`;
    case 'deallocate':
      return `${name} releases its DIP ${dip}${vm.ilpip !== null ? ` and its instance-level public IP ${vm.ilpip}` : ''}.${vipGoes}`;
    case 'restart':
      return `${name} restarts and keeps both addresses.`;
    case 'redeploy':
      return `${name} moves to another host${vm.staticDip !== null ? '; its static DIP stays' : '; its DIP may be redrawn'}.`;
    case 'delete':
      return `${name} is deleted for good${vm.dip !== null ? `, releasing its DIP ${vm.dip}` : ''}.${vipGoes}`;
  }
}
