/**
 * The `netns` driver: VMs are network namespaces, the load balancer is the kernel. A reconcile is a
 * world diff (world.ts: bridges, VM namespaces, addresses, run with `ip -batch`) and an nft diff
 * (render.ts: one `nft -f` transaction inside the world, only the moved Maglev slots for a health or
 * DIP change). Probes run from the world through a helper process there; workloads run inside their
 * VM's namespace (`ip netns exec`). Everything this driver makes lives in namespaces named with its
 * prefix: it removes a previous run's at start and its own on close.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { VipdipError, type Cidr } from '../../core/index.ts';
import type { ProbeResult, ProbeSpec, Prober } from '../../lb/index.ts';
import {
  DEFAULT_DRIVER_LIMITS,
  type DataPlaneDriver,
  type DesiredDataPlane,
  type DriverLimits,
  type DriverStatus,
  type ReconcileResult,
  type WorkloadCommand,
} from '../driver.ts';
import { nftState, renderUpdate, type NftState } from './render.ts';
import {
  EMPTY_WORLD,
  INTERNET_IF,
  createWorld,
  execWorld,
  planWorld,
  removeWorld,
  routableVnets,
  run,
  vmNamespace,
  worldNames,
  worldSpec,
  type WorldNames,
  type WorldSpec,
} from './world.ts';

export interface NetnsDriverOptions {
  /** Namespace name prefix (worldPrefix(stateDir)). */
  prefix: string;
  limits?: Partial<DriverLimits>;
  /** How to start the prober helper (`vipdip workload netns-prober`); no probes without it. */
  proberCommand?: WorkloadCommand;
}

/** Why this machine cannot run the netns driver, or undefined when it can. */
export function netnsUnsupported(): string | undefined {
  if (process.platform !== 'linux') return `it needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'it needs root (network namespaces and nftables)';
  for (const [tool, pkg] of [
    ['ip', 'iproute2'],
    ['nft', 'nftables'],
  ] as const) {
    if (spawnSync(tool, ['-V'], { stdio: 'ignore' }).error !== undefined)
      return `${tool} is missing (install ${pkg})`;
  }
  return undefined;
}

export class NetnsDriver implements DataPlaneDriver {
  readonly name = 'netns' as const;
  readonly carriesTraffic = true;
  readonly prober: Prober | undefined;
  readonly names: WorldNames;
  private readonly limits: DriverLimits;
  private world: WorldSpec = EMPTY_WORLD;
  private nft: NftState | undefined;
  private started: Promise<void> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private last: DesiredDataPlane = { endpoints: [], snat: [] };
  private closed = false;
  private helper: ProbeHelper | undefined;
  /** Slots written by the last nft update, and the time it took: for tests and the benchmark. */
  lastUpdate = { elements: 0, ms: 0 };

  constructor(private readonly opts: NetnsDriverOptions) {
    const why = netnsUnsupported();
    if (why !== undefined)
      throw new VipdipError('DRIVER_UNSUPPORTED', `the netns driver cannot run here: ${why}`);
    this.names = worldNames(opts.prefix);
    this.limits = { ...DEFAULT_DRIVER_LIMITS, ...opts.limits };
    if (opts.proberCommand !== undefined) {
      const cmd = opts.proberCommand;
      this.prober = (spec, deadlineMs) => this.probe(cmd, spec, deadlineMs);
    }
  }

  /** Any address plan: everything lives inside the world. */
  checkAddressPlan(_cidr: Cidr, _what: string): void {}

  /** Removes a previous run's namespaces of this prefix and makes the empty world. */
  start(): Promise<void> {
    this.started ??= (async () => {
      await removeWorld(this.opts.prefix);
      await createWorld(this.names);
    })();
    return this.started;
  }

  reconcile(desired: DesiredDataPlane): Promise<ReconcileResult> {
    const r = this.queue.then(() => this.apply(desired));
    this.queue = r.catch(() => {});
    return r;
  }

  private async apply(desired: DesiredDataPlane): Promise<ReconcileResult> {
    const result: ReconcileResult = { opened: 0, updated: 0, closed: 0, failed: [] };
    if (this.closed) return result;
    await this.start();
    const before = new Set(this.last.endpoints.map((e) => e.key));
    const after = new Set(desired.endpoints.map((e) => e.key));
    for (const k of after)
      if (before.has(k)) result.updated++;
      else result.opened++;
    for (const k of before) if (!after.has(k)) result.closed++;

    const routable = routableVnets(desired.vms ?? [], desired.vnets ?? []);
    result.failed.push(...routable.refused);
    const next = worldSpec(
      this.opts.prefix,
      routable.vms,
      routable.vnets,
      desired.endpoints.map((e) => e.address),
    );
    try {
      await execWorld(this.names, planWorld(this.world, next));
      this.world = next;
    } catch (e) {
      // The world is now somewhere between the two: rebuild it whole next time.
      result.failed.push({ key: 'world', error: (e as Error).message });
      await this.rebuild();
      return result;
    }
    const nft = nftState(
      {
        endpoints: desired.endpoints,
        snat: desired.snat,
        vnets: [...next.vnets.values()].map((v) => ({ subscription: v.subscription, bridge: v.bridge })),
        internetIf: INTERNET_IF,
        tableSize: this.limits.tableSize,
      },
      this.nft,
    );
    const update = renderUpdate(this.nft, nft);
    const t0 = performance.now();
    try {
      if (update.script !== '') await this.nftLoad(update.script);
      this.nft = nft;
      this.lastUpdate = { elements: update.elementsWritten, ms: performance.now() - t0 };
    } catch (e) {
      this.nft = undefined; // the next reconcile loads the whole ruleset
      for (const ep of desired.endpoints) result.failed.push({ key: ep.key, error: (e as Error).message });
    }
    this.last = desired;
    return result;
  }

  private async rebuild(): Promise<void> {
    this.world = EMPTY_WORLD;
    this.nft = undefined;
    await removeWorld(this.opts.prefix);
    await createWorld(this.names);
  }

  private nftLoad(script: string): Promise<string> {
    return run('ip', ['netns', 'exec', this.names.world, 'nft', '-f', '-'], script);
  }

  status(): DriverStatus {
    return {
      driver: 'netns',
      listeners: this.last.endpoints.map((e) => ({
        key: e.key,
        address: e.address,
        protocol: e.protocol,
        port: e.port,
        state: this.nft !== undefined ? ('listening' as const) : ('failed' as const),
        error: this.nft !== undefined ? null : 'the ruleset is not loaded',
        activeFlows: 0,
        accepted: 0,
        deniedAcl: 0,
        noBackend: 0,
        overLimit: 0,
      })),
    };
  }

  /** `ip netns exec VM-NAMESPACE …`: the workload runs on its VM's own interface, with its DIP. */
  /**
   * The kernel path reports no failed connects: a DNAT that meets a refusing backend is the client's
   * reset, which the world never sees as such. Health here comes from the probes (and the implicit TCP
   * check) alone, and a workload's exit from the agent; passive health is the local driver's.
   */
  onBackendFault(): () => void {
    return () => {};
  }

  wrapWorkload(vm: { service: string; vm: string; dip: string }, cmd: WorkloadCommand): WorkloadCommand {
    // The sandbox enters the namespace as root, then becomes its unprivileged user (agent/sandbox.ts).
    return { ...cmd, netns: vmNamespace(this.opts.prefix, `${vm.service}/${vm.vm}`) };
  }

  /** The command that runs `argv` in the internet namespace (`vipdip client`). */
  clientCommand(argv: readonly string[]): WorkloadCommand {
    return { command: 'ip', args: ['netns', 'exec', this.names.internet, ...argv] };
  }

  private async probe(cmd: WorkloadCommand, spec: ProbeSpec, deadlineMs: number): Promise<ProbeResult> {
    if (this.closed) return { ok: false, detail: 'the driver is closed' };
    // Probes may start before the first reconcile: the world they run in comes first.
    try {
      await this.start();
    } catch (e) {
      return { ok: false, detail: `no world to probe from: ${(e as Error).message}` };
    }
    if (this.helper === undefined || this.helper.dead) {
      this.helper = new ProbeHelper(['netns', 'exec', this.names.world, cmd.command, ...cmd.args]);
    }
    return this.helper.probe(spec, deadlineMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    this.helper?.stop();
    if (this.started !== undefined) {
      await this.started.catch(() => {});
      await removeWorld(this.opts.prefix);
    }
  }
}

/** The prober helper inside the world, and the probes waiting for its answers. */
class ProbeHelper {
  private readonly child: ChildProcess;
  private readonly waiting = new Map<number, (r: ProbeResult) => void>();
  private nextId = 1;
  dead = false;

  constructor(args: string[]) {
    this.child = spawn('ip', args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.on('exit', () => {
      this.dead = true;
      for (const done of this.waiting.values()) done({ ok: false, detail: 'the prober stopped' });
      this.waiting.clear();
    });
    this.child.on('error', () => (this.dead = true));
    // A helper that died leaves its pipe closed: the exit handler answers what was waiting.
    this.child.stdin!.on('error', () => (this.dead = true));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        const r = JSON.parse(line) as { id: number; ok: boolean; detail: string };
        this.waiting.get(r.id)?.({ ok: r.ok, detail: r.detail });
        this.waiting.delete(r.id);
      } catch {
        // not an answer
      }
    });
  }

  probe(spec: ProbeSpec, deadlineMs: number): Promise<ProbeResult> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      // The helper settles each probe by its deadline; this is the guard should the helper not.
      const guard = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ ok: false, detail: `no answer within ${deadlineMs} ms` });
      }, deadlineMs + 1000);
      guard.unref();
      this.waiting.set(id, (r) => {
        clearTimeout(guard);
        resolve(r);
      });
      this.child.stdin!.write(`${JSON.stringify({ id, spec, deadlineMs })}\n`);
    });
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill();
  }
}
