/**
 * A VM's workload in words: the image it runs, or the operator's inline command (`command: …`, see
 * SPEC §4). The server's vocabulary lives in src/lifecycle/images.ts; the dashboard, bundled apart,
 * needs only this much of it.
 */
const COMMAND_PREFIX = 'command:';

export type WorkloadShown =
  { kind: 'none' } | { kind: 'image'; image: string } | { kind: 'command'; command: string };

export function workloadShown(workload: string | null): WorkloadShown {
  if (workload === null) return { kind: 'none' };
  if (workload.startsWith(COMMAND_PREFIX)) {
    return { kind: 'command', command: workload.slice(COMMAND_PREFIX.length).trim() };
  }
  return { kind: 'image', image: workload };
}
