/**
 * How an agent reaches the control plane: a snapshot of the services and VMs, a push when something
 * committed, and a way back for its reports. `vipdip up` gives its agent the in-process `Cloud`;
 * a standalone agent (`vipdip agent --control URL`) gets the HTTP API and its event stream
 * (remote-source.ts). The agent reacts to the push, never to a polling interval.
 */
import type { Cloud } from '../lifecycle/index.ts';
import type { ControlSnapshot } from './desired.ts';
import type { StatusRegistry } from './registry.ts';
import type { AgentReport } from './report.ts';

export interface ControlSource {
  snapshot(): Promise<ControlSnapshot>;
  /**
   * Calls `onChange` after every committed change, and `onResync` when changes may have been missed
   * (a stream reconnected). Returns the unsubscribe function.
   */
  subscribe(onChange: () => void): () => void;
  report(r: AgentReport): Promise<void>;
  close(): Promise<void>;
}

/** The event types that change what the data plane must do; the rest (DNS-only, say) are skipped. */
export function affectsDataPlane(type: string): boolean {
  return (
    type.startsWith('vm.') ||
    type.startsWith('service.') ||
    type.startsWith('reserved-ip.') ||
    type === 'host.maintenance'
  );
}

export class InProcessSource implements ControlSource {
  constructor(
    private readonly cloud: Cloud,
    private readonly registry: StatusRegistry,
  ) {}

  async snapshot(): Promise<ControlSnapshot> {
    const [services, vms] = await Promise.all([this.cloud.listServices(), this.cloud.listVms()]);
    return { services, vms };
  }

  subscribe(onChange: () => void): () => void {
    return this.cloud.onEvents((events) => {
      if (events.some((e) => affectsDataPlane(e.type))) onChange();
    });
  }

  report(r: AgentReport): Promise<void> {
    this.registry.accept(r);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
