/**
 * The `none` driver: control plane only. It accepts any address plan, records the desired state it is
 * given (so a status shows what would be realized) and carries no traffic, runs no probe and no workload.
 */
import type { Cidr } from '../core/index.ts';
import type {
  DataPlaneDriver,
  DesiredDataPlane,
  DriverStatus,
  ReconcileResult,
  WorkloadCommand,
} from './driver.ts';

export class NoneDriver implements DataPlaneDriver {
  readonly name = 'none' as const;
  readonly carriesTraffic = false;
  readonly prober = undefined;
  private desired: DesiredDataPlane = { endpoints: [], snat: [] };

  checkAddressPlan(_cidr: Cidr, _what: string): void {}

  reconcile(desired: DesiredDataPlane): Promise<ReconcileResult> {
    const before = new Set(this.desired.endpoints.map((e) => e.key));
    const after = new Set(desired.endpoints.map((e) => e.key));
    this.desired = desired;
    return Promise.resolve({
      opened: [...after].filter((k) => !before.has(k)).length,
      updated: [...after].filter((k) => before.has(k)).length,
      closed: [...before].filter((k) => !after.has(k)).length,
      failed: [],
    });
  }

  status(): DriverStatus {
    return {
      driver: 'none',
      listeners: this.desired.endpoints.map((e) => ({
        key: e.key,
        address: e.address,
        protocol: e.protocol,
        port: e.port,
        state: 'recorded',
        error: null,
        activeFlows: 0,
        accepted: 0,
        deniedAcl: 0,
        noBackend: 0,
        overLimit: 0,
      })),
    };
  }

  onBackendFault(): () => void {
    return () => {};
  }

  wrapWorkload(_vm: unknown, cmd: WorkloadCommand): WorkloadCommand {
    return cmd;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
