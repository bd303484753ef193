/**
 * `vipdip get KIND [NAME] [-s SUB] [-o table|json|yaml]`: reads resources. `-o json` prints the
 * API's JSON as it came (a list for a listing, one object when NAME names one resource); the table
 * is for people and adds what they look for next to it, such as the VIP of each VM's service.
 */
import type { Command } from 'commander';
import type { Host, Pool, ReservedIp, Service, Subscription, Vm, Vnet } from '../core/api-shapes.ts';
import { connect, path, stateOption, type Client } from './client.ts';
import { CliError, UsageError } from './errors.ts';
import { parseVmName } from './names.ts';
import { outputOption, print, table } from './output.ts';

interface GetOptions {
  subscription?: string;
  output: string;
  state?: string;
}

interface Kind {
  /** What the kind's error messages call one of them. */
  noun: string;
  /** Whether -s means anything for it. */
  scoped: boolean;
  fetch(c: Client, name: string | undefined, sub: string | undefined): Promise<unknown>;
  table(c: Client, data: unknown, sub: string | undefined): Promise<string>;
}

const asList = <T>(data: unknown): T[] => (Array.isArray(data) ? (data as T[]) : [data as T]);

/**
 * A listing narrowed to one name. Without a subscription a name may exist in several (VNets and
 * reserved IPs are per subscription), and then -s has to say which.
 */
function pickOne<T extends { name: string; subscription?: string | null }>(
  all: T[],
  name: string,
  noun: string,
): T {
  const hits = all.filter((x) => x.name === name);
  if (hits.length === 0) throw new CliError(`not found: ${noun} ${name} does not exist`);
  if (hits.length > 1) {
    const subs = hits.map((h) => h.subscription ?? '?').join(', ');
    throw new UsageError(`${noun} ${name} exists in subscriptions ${subs}: say which with -s`);
  }
  return hits[0]!;
}

/** -s on a route without a subscription in its path: the answer must still belong to it. */
function checkSubscription(noun: string, name: string, actual: string, sub: string | undefined): void {
  if (sub !== undefined && actual !== sub) {
    throw new CliError(`not found: ${noun} ${name} does not exist in subscription ${sub}`);
  }
}

const subscriptions: Kind = {
  noun: 'subscription',
  scoped: true,
  fetch: (c, name, sub) => {
    if (name !== undefined && sub !== undefined && name !== sub) {
      throw new UsageError(`get subscriptions ${name} -s ${sub}: give the name once`);
    }
    const one = name ?? sub;
    return one === undefined
      ? c.get<Subscription[]>('/v1/subscriptions')
      : c.get<Subscription>(path`/v1/subscriptions/${one}`);
  },
  table: (_c, data) =>
    Promise.resolve(
      table(
        ['NAME', 'CREATED'],
        asList<Subscription>(data).map((s) => [s.name, s.createdAt]),
      ),
    ),
};

const vnets: Kind = {
  noun: 'virtual network',
  scoped: true,
  fetch: async (c, name, sub) => {
    if (sub !== undefined) {
      return name === undefined
        ? c.get<Vnet[]>(path`/v1/subscriptions/${sub}/vnets`)
        : c.get<Vnet>(path`/v1/subscriptions/${sub}/vnets/${name}`);
    }
    const all = await c.get<Vnet[]>('/v1/vnets');
    return name === undefined ? all : pickOne(all, name, 'virtual network');
  },
  table: (_c, data) => {
    const list = asList<Vnet>(data);
    let text = table(
      ['SUBSCRIPTION', 'NAME', 'ADDRESS-SPACE', 'DIP-POLICY', 'MOVE-POLICY', 'SUBNETS'],
      list.map((v) => [
        v.subscription,
        v.name,
        v.addressSpace.join(','),
        v.dipPolicy,
        v.movePolicy,
        v.subnets.map((s) => `${s.name}=${s.cidr}`).join(' '),
      ]),
    );
    // One network asked for by name: its subnets with their address counts too.
    if (!Array.isArray(data) && list[0] !== undefined) {
      text +=
        '\n' +
        table(
          ['SUBNET', 'CIDR', 'USABLE', 'BOUND', 'FREE'],
          list[0].subnets.map((s) => [s.name, s.cidr, s.usable, s.bound, s.free]),
        );
    }
    return Promise.resolve(text);
  },
};

const services: Kind = {
  noun: 'cloud service',
  scoped: true,
  fetch: async (c, name, sub) => {
    if (name === undefined) {
      return c.get<Service[]>(sub === undefined ? '/v1/services' : path`/v1/subscriptions/${sub}/services`);
    }
    const svc = await c.get<Service>(path`/v1/services/${name}`);
    checkSubscription('cloud service', name, svc.subscription, sub);
    return svc;
  },
  table: (_c, data) =>
    Promise.resolve(
      table(
        ['NAME', 'SUBSCRIPTION', 'VIP', 'RESERVED-IP', 'DNS', 'VMS'],
        asList<Service>(data).map((s) => [
          s.name,
          s.subscription,
          s.vip,
          s.reservedIp,
          s.dnsName,
          s.vms.length,
        ]),
      ),
    ),
};

const vms: Kind = {
  noun: 'VM',
  scoped: true,
  fetch: async (c, name, sub) => {
    if (name === undefined) {
      // There is no per-subscription VM listing; asking for the subscription first makes an unknown
      // one a not-found error rather than an empty list.
      if (sub !== undefined) await c.get<Subscription>(path`/v1/subscriptions/${sub}`);
      const all = await c.get<Vm[]>('/v1/vms');
      return sub === undefined ? all : all.filter((v) => v.subscription === sub);
    }
    const ref = parseVmName(name);
    if (ref.vm === undefined) {
      const list = await c.get<Vm[]>(path`/v1/services/${ref.service}/vms`);
      if (sub !== undefined) {
        const svc = await c.get<Service>(path`/v1/services/${ref.service}`);
        checkSubscription('cloud service', ref.service, svc.subscription, sub);
      }
      return list;
    }
    const vm = await c.get<Vm>(path`/v1/services/${ref.service}/vms/${ref.vm}`);
    checkSubscription('VM', name, vm.subscription, sub);
    return vm;
  },
  table: async (c, data, sub) => {
    const list = asList<Vm>(data);
    const names = new Set(list.map((v) => v.service));
    let svcs: Service[];
    if (names.size === 1) svcs = [await c.get<Service>(path`/v1/services/${[...names][0]!}`)];
    else if (names.size === 0) svcs = [];
    else
      svcs = await c.get<Service[]>(
        sub === undefined ? '/v1/services' : path`/v1/subscriptions/${sub}/services`,
      );
    const vip = new Map(svcs.map((s) => [s.name, s.vip]));
    return table(
      ['SERVICE/NAME', 'STATE', 'DIP', 'VIP', 'HOST', 'SUBNET', 'STATIC', 'ILPIP'],
      list.map((v) => [
        `${v.service}/${v.name}`,
        v.state,
        v.dip,
        vip.get(v.service),
        v.host,
        v.subnet,
        v.staticDip,
        v.ilpip,
      ]),
    );
  },
};

const reservedIps: Kind = {
  noun: 'reserved IP',
  scoped: true,
  fetch: async (c, name, sub) => {
    if (sub !== undefined) {
      return name === undefined
        ? c.get<ReservedIp[]>(path`/v1/subscriptions/${sub}/reserved-ips`)
        : c.get<ReservedIp>(path`/v1/subscriptions/${sub}/reserved-ips/${name}`);
    }
    const all = await c.get<ReservedIp[]>('/v1/reserved-ips');
    return name === undefined ? all : pickOne(all, name, 'reserved IP');
  },
  table: (_c, data) =>
    Promise.resolve(
      table(
        ['SUBSCRIPTION', 'NAME', 'ADDRESS', 'SERVICE'],
        asList<ReservedIp>(data).map((r) => [r.subscription, r.name, r.address, r.service]),
      ),
    ),
};

const hosts: Kind = {
  noun: 'host',
  scoped: false,
  fetch: async (c, name) => {
    const all = await c.get<Host[]>('/v1/hosts');
    return name === undefined ? all : pickOne(all, name, 'host');
  },
  table: (_c, data) =>
    Promise.resolve(
      table(
        ['NAME', 'RACK', 'VMS'],
        asList<Host>(data).map((h) => [h.name, h.rack, h.vms]),
      ),
    ),
};

const pools: Kind = {
  noun: 'public pool',
  scoped: false,
  fetch: async (c, name) => {
    const all = await c.get<Pool[]>('/v1/pools');
    if (name === undefined) return all;
    const hit = all.find((p) => p.cidr === name);
    if (hit === undefined) throw new CliError(`not found: public pool ${name} does not exist`);
    return hit;
  },
  table: (_c, data) =>
    Promise.resolve(
      table(
        ['CIDR', 'USABLE', 'BOUND', 'FREE'],
        asList<Pool>(data).map((p) => [p.cidr, p.usable, p.bound, p.free]),
      ),
    ),
};

/** Every spelling a user may reach for, plural first (the one help shows). */
const KINDS: Record<string, Kind> = {
  subscriptions,
  subscription: subscriptions,
  subs: subscriptions,
  sub: subscriptions,
  vnets,
  vnet: vnets,
  services,
  service: services,
  svc: services,
  vms,
  vm: vms,
  'reserved-ips': reservedIps,
  'reserved-ip': reservedIps,
  rips: reservedIps,
  rip: reservedIps,
  hosts,
  host: hosts,
  pools,
  pool: pools,
};
const SHOWN = 'subscriptions|vnets|services|vms|reserved-ips|hosts|pools';

export function registerGet(program: Command): void {
  stateOption(program.command('get'))
    .description('show resources: a listing, or one by name (VMs as SERVICE/VM, or SERVICE for all of its)')
    .argument('<kind>', SHOWN)
    .argument('[name]', 'one resource')
    .option('-s, --subscription <name>', 'only this subscription')
    .addOption(outputOption())
    .action(async (kindName: string, name: string | undefined, opts: GetOptions) => {
      const kind = KINDS[kindName];
      if (kind === undefined) throw new UsageError(`get ${kindName}: the kinds are ${SHOWN}`);
      if (!kind.scoped && opts.subscription !== undefined) {
        throw new UsageError(
          `get ${kindName}: ${kind.noun}s belong to no subscription, so -s does not apply`,
        );
      }
      const c = connect(opts);
      const data = await kind.fetch(c, name, opts.subscription);
      await print(opts.output, data, () => kind.table(c, data, opts.subscription));
    });
}
