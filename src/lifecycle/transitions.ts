/**
 * The VM state machine as one explicit table. An operation that has no entry for the current state
 * is refused with INVALID_TRANSITION; nothing is ever a silent no-op.
 */
import { VipdipError } from '../core/errors.ts';

export const VM_STATES = ['running', 'stopped', 'deallocated'] as const;
export type VmState = (typeof VM_STATES)[number];

export const VM_OPERATIONS = ['start', 'stop', 'deallocate', 'restart', 'redeploy', 'delete'] as const;
export type VmOperation = (typeof VM_OPERATIONS)[number];

/** `null` as the target means the VM is gone. */
export const TRANSITIONS: Readonly<Record<VmOperation, Partial<Record<VmState, VmState | null>>>> = {
  start: { deallocated: 'running', stopped: 'running' },
  stop: { running: 'stopped' },
  deallocate: { running: 'deallocated', stopped: 'deallocated' },
  restart: { running: 'running' },
  redeploy: { running: 'running', stopped: 'stopped' },
  delete: { running: null, stopped: null, deallocated: null },
};

/** A VM holds a DIP (and a host) exactly in these states (I3). */
export function isAllocated(state: VmState): boolean {
  return state !== 'deallocated';
}

export function isVmState(s: string): s is VmState {
  return (VM_STATES as readonly string[]).includes(s);
}

export function isVmOperation(s: string): s is VmOperation {
  return (VM_OPERATIONS as readonly string[]).includes(s);
}

/** The state an operation leads to, or an INVALID_TRANSITION error naming both. */
export function nextState(vm: string, state: VmState, op: VmOperation): VmState | null {
  const row = TRANSITIONS[op];
  if (!(state in row)) {
    const allowed = Object.keys(row).join(' or ');
    throw new VipdipError(
      'INVALID_TRANSITION',
      `cannot ${op} VM ${vm}: it is ${state} (${op} needs a VM that is ${allowed})`,
      { state, operation: op },
    );
  }
  return row[state]!;
}
