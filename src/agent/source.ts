/**
 * How an agent reaches the control plane: a snapshot of the services and VMs, a push when something
 * committed, and a way back for its reports. `vipdip up` gives its agent the in-process `Cloud`;
 * a standalone agent (`vipdip agent --control URL`) gets the HTTP API and its event stream
 * (remote-source.ts). The agent reacts to the push, never to a polling interval.
 */
import { isVipdipError } from '../core/errors.ts';
import {
  affectsDataPlane,
  changesVmList,
  eventKind,
  parseResource,
  type Cloud,
  type EventView,
  type ImageView,
  type ServiceView,
  type VmView,
  type VnetView,
} from '../lifecycle/index.ts';
import type { ControlSnapshot } from './desired.ts';
import type { StatusRegistry } from './registry.ts';
import type { AgentReport } from './report.ts';

/** However well the log is followed, the whole state is read again this often. */
const FULL_RESYNC_INTERVAL_MS = 60_000;

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

/** The event types that change what the data plane must do (the catalog says; the rest are skipped). */
export { affectsDataPlane };

/**
 * What one committed event changes of the snapshot: the VMs and services to read again. A VM
 * created or deleted changes its service's list of VMs; a reserved IP (dis)associated changes the
 * service it names.
 */
export function touchedBy(e: EventView): { vms: string[]; services: string[] } {
  const res = parseResource(e.resource);
  if (res?.kind === 'vm') {
    const services = changesVmList(e.type) ? [res.service] : [];
    return { vms: [`${res.service}/${res.vm}`], services };
  }
  if (res?.kind === 'service') return { vms: [], services: [res.service] };
  if (res?.kind === 'reserved-ip') {
    const named = [e.old?.service, e.new?.service].filter((s): s is string => typeof s === 'string');
    return { vms: [], services: named };
  }
  return { vms: [], services: [] };
}

/**
 * The agent's view of the cloud in this process, kept up to date per change: the first snapshot
 * reads every service and VM, and later ones read again only those the events since named, so a
 * snapshot after one change costs the same however large the cloud. Everything is read again on a
 * gap in the event sequence and every FULL_RESYNC_INTERVAL_MS.
 */
export class InProcessSource implements ControlSource {
  private services = new Map<string, ServiceView>();
  private vms = new Map<string, VmView>();
  private dirtyServices = new Set<string>();
  private dirtyVms = new Set<string>();
  /** Images and VNets are read whole, but only after an event changed them (or on a full read). */
  private images: readonly ImageView[] = [];
  private vnets: readonly VnetView[] = [];
  private imagesDirty = true;
  private vnetsDirty = true;
  private full = true;
  private lastFullMs = 0;
  private lastSeq: number;
  private readonly unfollow: () => void;

  constructor(
    private readonly cloud: Cloud,
    private readonly registry: StatusRegistry,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.lastSeq = cloud.feed.position;
    this.unfollow = cloud.onEvents((events) => this.follow(events));
  }

  private follow(events: readonly EventView[]): void {
    for (const e of events) {
      if (e.seq !== this.lastSeq + 1) this.full = true; // a change may have been missed
      this.lastSeq = Math.max(this.lastSeq, e.seq);
      const kind = eventKind(e.type);
      if (kind === 'image') this.imagesDirty = true;
      if (kind === 'vnet') this.vnetsDirty = true;
      const t = touchedBy(e);
      for (const v of t.vms) this.dirtyVms.add(v);
      for (const s of t.services) this.dirtyServices.add(s);
    }
  }

  async snapshot(): Promise<ControlSnapshot> {
    if (this.full || this.nowMs() - this.lastFullMs >= FULL_RESYNC_INTERVAL_MS) await this.readAll();
    else await this.readChanged();
    // Images (a changed one restarts its VMs) and VNets (a driver that makes hosts needs each subnet's
    // CIDR) are read whole, but only when an event changed them: a VM's change costs no listing.
    // An event that lands during a read marks them again, to be read next time.
    if (this.imagesDirty) {
      this.imagesDirty = false;
      this.images = await this.cloud.listImages();
    }
    if (this.vnetsDirty) {
      this.vnetsDirty = false;
      this.vnets = await this.cloud.listVnets();
    }
    return {
      services: [...this.services.values()],
      vms: [...this.vms.values()],
      images: this.images,
      vnets: this.vnets,
    };
  }

  private async readAll(): Promise<void> {
    // Events published while reading mark their resources again: read again next time.
    this.full = false;
    this.imagesDirty = true;
    this.vnetsDirty = true;
    this.dirtyServices = new Set();
    this.dirtyVms = new Set();
    this.lastFullMs = this.nowMs();
    const [services, vms] = await Promise.all([this.cloud.listServices(), this.cloud.listVms()]);
    this.services = new Map(services.map((s) => [s.name, s]));
    this.vms = new Map(vms.map((v) => [`${v.service}/${v.name}`, v]));
  }

  private async readChanged(): Promise<void> {
    const services = this.dirtyServices;
    const vms = this.dirtyVms;
    this.dirtyServices = new Set();
    this.dirtyVms = new Set();
    for (const name of services) {
      const s = await orGone(this.cloud.getService(name));
      if (s === undefined) this.services.delete(name);
      else this.services.set(name, s);
    }
    for (const key of vms) {
      const [service, vm] = key.split('/') as [string, string];
      const v = await orGone(this.cloud.getVm({ service, vm }));
      if (v === undefined) this.vms.delete(key);
      else this.vms.set(key, v);
    }
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
    this.unfollow();
    return Promise.resolve();
  }
}

/** A resource deleted since its event: gone from the snapshot. */
async function orGone<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (isVipdipError(e, 'NOT_FOUND')) return undefined;
    throw e;
  }
}
