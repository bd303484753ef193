/**
 * The `netns` driver: VMs are network namespaces, the load balancer is the kernel. A reconcile is a
 * world diff (world.ts: a router namespace per subscription behind the core, bridges, VM namespaces,
 * addresses, run with `ip -batch`) and an nft diff per namespace (render.ts: one `nft -f`
 * transaction in each router whose rules changed, only the moved Maglev slots for a health or DIP
 * change). Probes run from the router of the DIP's subscription through a helper process there (the
 * core's helper answers DNS for the internet); workloads run inside their VM's namespace (`ip netns
 * exec`). Everything this driver makes lives in namespaces named with its prefix: it removes a
 * previous run's at start and its own on close. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { VipdipError, type Cidr } from '../../core/index.ts';
import { scopeQuery, unscopeReply, type DnsScope } from '../../dns/index.ts';
import type { ProbeResult, ProbeSpec, Prober, TimeSource } from '../../lb/index.ts';
import {
  DEFAULT_DRIVER_LIMITS,
  type DataPlaneDriver,
  type DesiredDataPlane,
  type DriverLimits,
  type DriverStatus,
  type ReconcileResult,
  type WorkloadCommand,
} from '../driver.ts';
import { NftChannel } from './nft-channel.ts';
import { coreNftState, nftState, renderUpdate, routerNftInput, type NftState } from './render.ts';
import {
  EMPTY_WORLD,
  addNamespaces,
  checkNetnsPlan,
  createWorld,
  dnsListeners,
  netnsEtcDir,
  execWorld,
  planWorld,
  removeWorld,
  routablePublic,
  routableVnets,
  routerHolding,
  vmNamespace,
  worldNames,
  worldSpec,
  type WorldNames,
  type WorldRouter,
  type WorldSpec,
} from './world.ts';

export interface NetnsDriverOptions {
  /** Namespace name prefix (worldPrefix(stateDir)). */
  prefix: string;
  limits?: Partial<DriverLimits>;
  /** Model time: idle timeouts (conntrack's, in the kernel) are scaled to the wall clock by it. */
  time?: TimeSource;
  /**
   * How to start the helper inside the world (`vipdip workload netns-prober`): it runs the probes and
   * answers DNS in the world. No probes and no DNS in the world without it.
   */
  proberCommand?: WorkloadCommand;
  /**
   * `false`: every ruleset update through a new `nft -f` process instead of the long-lived `nft -i`
   * channel (the old path, kept for side-by-side benchmarks).
   */
  nftInteractive?: boolean;
}

/** vipdip's DNS server (in the root namespace), which the world's DNS relays to. */
export interface WorldDnsTarget {
  address: string;
  port: number;
  /** The internal zone: the `search` domain of each VM's resolv.conf. */
  searchZone?: string;
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
  /** The ruleset in force in each namespace (the core and the routers); absent: load it whole. */
  private nft = new Map<string, NftState>();
  private started: Promise<void> | undefined;
  /** The reconcile running now, and the latest state asked for while it runs (with who waits for it). */
  private running: Promise<void> | undefined;
  private pending:
    | {
        desired: DesiredDataPlane;
        waiters: { resolve(r: ReconcileResult): void; reject(e: unknown): void }[];
      }
    | undefined;
  /** One long-lived nft channel per network namespace that has a ruleset. */
  private readonly nftChannels = new Map<string, NftChannel>();
  private last: DesiredDataPlane = { endpoints: [], snat: [] };
  /** Endpoints of the last state that this world cannot carry (routablePublic), with the reason. */
  private refusedEndpoints = new Map<string, string>();
  private closed = false;
  /** The helper of each namespace (the core's answers DNS for the internet; a router's probes its DIPs and answers its VNets). */
  private helpers = new Map<string, ProbeHelper>();
  private dns: WorldDnsTarget | undefined;
  /** By namespace, the helper's DNS listeners and who asks through each: the scope a query is relayed with. */
  private dnsScopes = new Map<string, Map<string, DnsScope>>();
  /** Whether the last reconcile's rulesets all went in. */
  private loaded = false;
  /**
   * Slots written by the last nft update, the time it took, and when (performance.now()) the kernel
   * had it: for tests and the benchmark.
   */
  lastUpdate = { elements: 0, ms: 0, inForceAt: 0 };
  /** Reconciles run, and reconcile calls answered by a later run (coalesced): for tests and the benchmark. */
  readonly reconcileStats = { runs: 0, coalesced: 0 };

  constructor(private readonly opts: NetnsDriverOptions) {
    const why = netnsUnsupported();
    if (why !== undefined)
      throw new VipdipError('DRIVER_UNSUPPORTED', `the netns driver cannot run here: ${why}`);
    this.names = worldNames(opts.prefix);
    this.limits = { ...DEFAULT_DRIVER_LIMITS, ...opts.limits };
    if (opts.proberCommand !== undefined) {
      this.prober = (spec, deadlineMs) => this.probe(spec, deadlineMs);
    }
  }

  /** Any address plan: everything lives inside the world. */
  checkAddressPlan(cidr: Cidr, what: string): void {
    checkNetnsPlan(cidr, what);
  }

  /** Removes a previous run's namespaces of this prefix and makes the empty world. */
  start(): Promise<void> {
    this.started ??= (async () => {
      await removeWorld(this.opts.prefix);
      await createWorld(this.names);
    })();
    return this.started;
  }

  /**
   * Reconciles coalesce: a call made while a reconcile runs waits for the next one, which applies the
   * latest state asked for; calls in between are answered by it too (their states are superseded).
   * So a burst of changes costs one reconcile after the running one, not one each.
   */
  reconcile(desired: DesiredDataPlane): Promise<ReconcileResult> {
    return new Promise((resolve, reject) => {
      if (this.pending !== undefined) {
        this.pending.desired = desired;
        this.pending.waiters.push({ resolve, reject });
        this.reconcileStats.coalesced++;
      } else this.pending = { desired, waiters: [{ resolve, reject }] };
      this.kick();
    });
  }

  private kick(): void {
    if (this.running !== undefined || this.pending === undefined) return;
    const job = this.pending;
    this.pending = undefined;
    this.reconcileStats.runs++;
    this.running = this.apply(job.desired).then(
      (r) => {
        for (const w of job.waiters) w.resolve(r);
      },
      (e: unknown) => {
        for (const w of job.waiters) w.reject(e);
      },
    );
    void this.running.finally(() => {
      this.running = undefined;
      this.kick();
    });
  }

  /** Resolves when no reconcile runs and none waits. */
  private async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
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
    const reachable = routablePublic(desired.endpoints, desired.snat);
    result.failed.push(...reachable.refused);
    const usable = { endpoints: reachable.endpoints, snat: reachable.snat };
    const next = worldSpec(
      this.opts.prefix,
      routable.vms,
      routable.vnets,
      [
        ...usable.endpoints.map((e) => ({ address: e.address, subscription: e.subscription })),
        // A caller's VIP or ILPIP is where its replies come back to, endpoints or not.
        ...usable.snat.map((x) => ({ address: x.source, subscription: x.subscription })),
      ],
      this.world,
    );
    const plan = planWorld(this.world, next);
    await ensureNeighbourRoom(next.vms.size);
    // The namespaces first: a new router's ruleset goes into it. Then the rulesets (`nft`) and the
    // devices (`ip`): the rules name bridges and links by name only and need no device to exist. A
    // small update (a DIP or health change: a few elements through each namespace's open `nft -i`)
    // is waited for before any `ip` process starts, so the new DNAT is in force within milliseconds
    // of the reconcile and does not share the CPU with `ip`; a large one (a first build: seconds of
    // `nft` parsing the Maglev maps of 1,000 VMs) runs alongside the devices.
    let worldError: Error | undefined;
    try {
      await addNamespaces(plan);
    } catch (e) {
      worldError = e as Error;
    }
    // A namespace about to go loses its nft channel first (a process inside would keep it alive).
    await Promise.all(plan.deleteNamespaces.map((ns) => this.closeNftChannel(ns)));
    const timeScale = this.opts.time !== undefined ? this.opts.time.wallMs(1_000_000) / 1_000_000 : 1;
    const states = new Map<string, NftState>();
    states.set(
      this.names.world,
      coreNftState([...(dnsListeners(next, this.names.world).get(this.names.world)?.keys() ?? [])]),
    );
    for (const [ns, input] of routerNftInput(next, usable, {
      tableSize: this.limits.tableSize,
      timeScale,
    }))
      states.set(ns, nftState(input, this.nft.get(ns)));
    const routerOf = new Map([...next.routers.values()].map((r) => [r.ns, r.subscription]));
    // A gone router's ruleset goes with its namespace.
    for (const ns of this.nft.keys()) if (!states.has(ns)) this.nft.delete(ns);
    const updates = [...states]
      .filter(([ns]) => worldError === undefined || this.nft.has(ns) || ns === this.names.world)
      .map(([ns, state]) => ({ ns, state, update: renderUpdate(this.nft.get(ns), state) }));
    const t0 = performance.now();
    const elements = updates.reduce((n, u) => n + u.update.elementsWritten, 0);
    const nftDone = Promise.all(
      updates.map(async ({ ns, state, update }) => {
        try {
          if (update.script !== '') await this.applyRuleset(ns, update.script);
          this.nft.set(ns, state);
          return undefined;
        } catch (e) {
          this.nft.delete(ns); // the next reconcile loads its whole ruleset
          return { ns, error: e as Error };
        }
      }),
    ).then((errors) => {
      const now = performance.now();
      this.lastUpdate = { elements, ms: now - t0, inForceAt: now };
      return errors;
    });
    const bytes = updates.reduce((n, u) => n + u.update.script.length, 0);
    if (bytes <= SMALL_UPDATE_BYTES) await nftDone;
    const worldDone =
      worldError !== undefined
        ? Promise.resolve(worldError)
        : execWorld(this.names, plan).then(
            () => undefined,
            (e: unknown) => e as Error,
          );
    const nftErrors = await nftDone;
    worldError ??= await worldDone;
    this.loaded = true;
    for (const f of nftErrors) {
      if (f === undefined) continue;
      this.loaded = false;
      const sub = routerOf.get(f.ns);
      for (const ep of usable.endpoints)
        if (sub === undefined || ep.subscription === sub)
          result.failed.push({ key: ep.key, error: f.error.message });
    }
    if (worldError !== undefined) {
      // The world is now somewhere between the two: rebuild it whole next time.
      result.failed.push({ key: 'world', error: worldError.message });
      await this.rebuild();
      return result;
    }
    // Helpers of routers that are gone stop (their namespace went with them).
    for (const [ns, h] of this.helpers)
      if (ns !== this.names.world && !routerOf.has(ns)) {
        h.stop();
        this.helpers.delete(ns);
      }
    this.world = next;
    // New VMs, and moved ones (another VNet is another gateway), get their resolv.conf.
    const moved = plan.readdressed.map((k) => next.vms.get(k)?.ns).filter((n) => n !== undefined);
    await this.resolvConfs([...plan.addNamespaces, ...moved], plan.deleteNamespaces);
    this.dnsListen();
    this.last = desired;
    this.refusedEndpoints = new Map(reachable.refused.map((r) => [r.key, r.error]));
    return result;
  }

  /**
   * Answers DNS inside the world from now on: the helper listens on port 53 of every VNet gateway and
   * of the internet link's world end, relaying to `target`, and each VM namespace gets a resolv.conf
   * (`/etc/netns/NS/resolv.conf`, which `ip netns exec` mounts over /etc/resolv.conf) naming its
   * gateway. Needs the helper (`proberCommand`).
   */
  async serveDns(target: WorldDnsTarget): Promise<void> {
    if (this.opts.proberCommand === undefined)
      throw new VipdipError('DRIVER_UNSUPPORTED', 'DNS in the netns world needs the helper command');
    this.dns = target;
    await this.start();
    await this.resolvConfs(
      [...this.world.vms.values()].map((v) => v.ns),
      [],
    );
    this.dnsListen();
  }

  /** The world addresses DNS answers on: the gateways of the VNets (of every router), and the internet link's. */
  dnsAddresses(): string[] {
    return [
      ...new Set([...dnsListeners(this.world, this.names.world).values()].flatMap((m) => [...m.keys()])),
    ].sort();
  }

  /** The router of a subscription, while it has one: its namespace and link (tests and the benchmark). */
  router(subscription: string): WorldRouter | undefined {
    return this.world.routers.get(subscription);
  }

  private dnsListen(): void {
    if (this.dns === undefined || this.closed) return;
    // The scopes change before the listeners do: a new listener's first query finds its scope.
    this.dnsScopes = dnsListeners(this.world, this.names.world);
    for (const [ns, scopes] of this.dnsScopes) this.helper(ns)?.listen([...scopes.keys()].sort());
  }

  /** Writes the resolv.conf of new VM namespaces (when DNS is served) and removes those of gone ones. */
  private async resolvConfs(added: readonly string[], deleted: readonly string[]): Promise<void> {
    await Promise.all(deleted.map((ns) => rm(netnsEtcDir(ns), { recursive: true, force: true })));
    const dns = this.dns;
    if (dns === undefined) return;
    const byNs = new Map([...this.world.vms.values()].map((v) => [v.ns, v.gateway]));
    const text = (gw: string) =>
      `# vipdip netns world: DNS through the VNet gateway\nnameserver ${gw}\n` +
      (dns.searchZone !== undefined ? `search ${dns.searchZone}\n` : '');
    const jobs = added.filter((ns) => byNs.has(ns));
    const worker = async () => {
      for (let ns = jobs.shift(); ns !== undefined; ns = jobs.shift()) {
        await mkdir(netnsEtcDir(ns), { recursive: true });
        await writeFile(`${netnsEtcDir(ns)}/resolv.conf`, text(byNs.get(ns)!));
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  }

  /**
   * Relays one query that arrived on the listener `at` of namespace `ns` to vipdip's DNS server, over the transport it
   * came on, with the scope of that listener (dns/scope.ts): a VM sees its own VNet's internal names
   * only, the internet namespace none. A query from a listener that is no more, or one the relay
   * cannot parse to scope, is dropped: unscoped, it would see every name.
   */
  private async relayDns(ns: string, data: Buffer, tcp: boolean, at: string): Promise<Buffer | undefined> {
    const dns = this.dns;
    // By the namespace the query arrived in and then the address: gateways of two subscriptions may be equal.
    const scope = this.dnsScopes.get(ns)?.get(at);
    if (dns === undefined || scope === undefined) return undefined;
    const scoped = scopeQuery(data, scope);
    if (scoped === undefined) return undefined;
    const answer = await (tcp ? relayTcp(dns, scoped.query) : relayUdp(dns, scoped.query));
    return answer !== undefined && scoped.addedOpt ? unscopeReply(answer) : answer;
  }

  /** The helper of namespace `ns` (the core or a router), started when first needed or after it died. */
  private helper(ns: string): ProbeHelper | undefined {
    const cmd = this.opts.proberCommand;
    if (cmd === undefined || this.closed) return undefined;
    let h = this.helpers.get(ns);
    if (h === undefined || h.dead) {
      h = new ProbeHelper(['netns', 'exec', ns, cmd.command, ...cmd.args], (d, tcp, at) =>
        this.relayDns(ns, d, tcp, at),
      );
      this.helpers.set(ns, h);
      // A helper started again listens where the last one did.
      const scopes = this.dns !== undefined ? this.dnsScopes.get(ns) : undefined;
      if (scopes !== undefined) h.listen([...scopes.keys()].sort());
    }
    return h;
  }

  private async rebuild(): Promise<void> {
    // Until a reconcile loads it again, nothing of the last state is answered.
    this.loaded = false;
    this.world = EMPTY_WORLD;
    this.nft.clear();
    for (const h of this.helpers.values()) h.stop();
    this.helpers.clear();
    await this.closeNftChannels();
    await removeWorld(this.opts.prefix);
    await createWorld(this.names);
  }

  /**
   * Applies nft text `script` as one transaction in network namespace `ns` (the core or a router),
   * through that namespace's long-lived channel (nft-channel.ts): resolves when the kernel has it,
   * rejects when it was refused (nothing of it is then in force). The one way this driver changes a
   * ruleset.
   */
  private applyRuleset(ns: string, script: string): Promise<void> {
    let ch = this.nftChannels.get(ns);
    if (ch === undefined) {
      ch = new NftChannel(ns, { interactive: this.opts.nftInteractive ?? true });
      this.nftChannels.set(ns, ch);
    }
    return ch.apply(script);
  }

  /** Ends the nft channel of `ns`, if it has one. */
  private async closeNftChannel(ns: string): Promise<void> {
    const ch = this.nftChannels.get(ns);
    this.nftChannels.delete(ns);
    await ch?.close();
  }

  /** Ends every nft channel: before its namespace is deleted (a process inside keeps it alive). */
  private async closeNftChannels(): Promise<void> {
    const all = [...this.nftChannels.values()];
    this.nftChannels.clear();
    await Promise.all(all.map((c) => c.close()));
  }

  status(): DriverStatus {
    return {
      driver: 'netns',
      listeners: this.last.endpoints.map((e) => {
        // An endpoint the world cannot carry is not answered, whether or not the rest went in.
        const error = this.refusedEndpoints.get(e.key) ?? (this.loaded ? null : 'the ruleset is not loaded');
        return {
          key: e.key,
          address: e.address,
          protocol: e.protocol,
          port: e.port,
          state: error === null ? ('listening' as const) : ('failed' as const),
          error,
          activeFlows: 0,
          accepted: 0,
          deniedAcl: 0,
          noBackend: 0,
          overLimit: 0,
        };
      }),
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

  private async probe(spec: ProbeSpec, deadlineMs: number): Promise<ProbeResult> {
    if (this.closed) return { ok: false, detail: 'the driver is closed' };
    // Probes may start before the first reconcile: the world they run in comes first.
    try {
      await this.start();
    } catch (e) {
      return { ok: false, detail: `no world to probe from: ${(e as Error).message}` };
    }
    // From inside the router of the DIP's subscription (`network`), where its VNet is routed; a
    // probe that names none goes to the router holding the address. A router made by the reconcile
    // under way is waited for.
    const where = () =>
      spec.network !== undefined
        ? this.world.routers.get(spec.network)?.ns
        : routerHolding(this.world, spec.address);
    let ns = where();
    if (ns === undefined) {
      await this.idle();
      ns = where();
    }
    if (ns === undefined)
      return {
        ok: false,
        detail: `no router holds ${spec.address}${spec.network !== undefined ? ` for ${spec.network}` : ''}`,
      };
    const helper = this.helper(ns);
    if (helper === undefined) return { ok: false, detail: 'the driver is closed' };
    return helper.probe(spec, deadlineMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    this.loaded = false;
    for (const h of this.helpers.values()) h.stop();
    this.helpers.clear();
    await this.closeNftChannels();
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

  constructor(
    args: string[],
    private readonly onDns: (data: Buffer, tcp: boolean, at: string) => Promise<Buffer | undefined>,
  ) {
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
        const r = JSON.parse(line) as {
          id: number;
          ok: boolean;
          detail: string;
          dns?: number;
          tcp?: boolean;
          data?: string;
          at?: string;
        };
        if (typeof r.dns === 'number' && typeof r.data === 'string' && typeof r.at === 'string') {
          const id = r.dns;
          void this.onDns(Buffer.from(r.data, 'base64'), r.tcp === true, r.at).then((answer) => {
            if (answer !== undefined && !this.dead)
              this.child.stdin!.write(`${JSON.stringify({ dns: id, data: answer.toString('base64') })}\n`);
          });
          return;
        }
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

  /** Listens for DNS on port 53 of exactly these world addresses. */
  listen(addresses: readonly string[]): void {
    if (!this.dead) this.child.stdin!.write(`${JSON.stringify({ listen: addresses })}\n`);
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill();
  }
}

/**
 * Makes room in the kernel's neighbour (ARP) table for a world of `vms` VMs. That table is one for
 * the whole machine, every namespace included: its limits exist only in the initial namespace
 * (`/proc/sys/net/ipv4/neigh/default/gc_thresh*`; a new namespace has no such directory), and each
 * VM costs at least two entries (the VM's for its gateway, the world's for the VM). At the default
 * gc_thresh3 of 1,024 a world of 1,000 VMs overflowed ("neighbor table overflow" in dmesg) and 106
 * of 250 VIPs never answered. The limits are only ever raised, to 4 entries per VM above the
 * default, never lowered, and no other setting of the host is touched.
 */
async function ensureNeighbourRoom(vms: number): Promise<void> {
  if (vms <= 128) return;
  const want: [string, number][] = [
    ['gc_thresh2', 3 * vms + 512],
    ['gc_thresh3', 4 * vms + 1024],
  ];
  for (const [name, value] of want) {
    const path = `/proc/sys/net/ipv4/neigh/default/${name}`;
    const now = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isFinite(now) && now >= value) continue;
    await writeFile(path, `${value}\n`).catch(() => {});
  }
}

/**
 * Ruleset updates up to this size (bytes of nft text) are waited for before the `ip` work of a
 * reconcile starts; larger ones (whole slot maps) run alongside it.
 */
const SMALL_UPDATE_BYTES = 16 * 1024;

/** How long the relay waits for vipdip's DNS server. */
const DNS_UPSTREAM_MS = 4000;

function relayUdp(to: WorldDnsTarget, data: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const sock = createSocket(to.address.includes(':') ? 'udp6' : 'udp4');
    const done = (answer: Buffer | undefined) => {
      clearTimeout(guard);
      sock.close();
      resolve(answer);
    };
    const guard = setTimeout(() => done(undefined), DNS_UPSTREAM_MS);
    sock.on('error', () => done(undefined));
    sock.once('message', (msg) => done(msg));
    sock.send(data, to.port, to.address);
  });
}

function relayTcp(to: WorldDnsTarget, data: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const conn = connect(to.port, to.address);
    let buf = Buffer.alloc(0);
    let settled = false;
    const done = (answer: Buffer | undefined) => {
      if (settled) return;
      settled = true;
      conn.destroy();
      resolve(answer);
    };
    conn.setTimeout(DNS_UPSTREAM_MS, () => done(undefined));
    conn.on('error', () => done(undefined));
    conn.on('close', () => done(undefined));
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0))
        done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(data.length);
    conn.write(Buffer.concat([len, data]));
  });
}
