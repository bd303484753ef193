/**
 * Declarative topologies (SPEC.md §7): parse a YAML or JSON document, validate all of it at once
 * (every problem listed with its path), then create and update what it names inside one batch, so an
 * apply is all or nothing. A dry run does the same work and rolls it back: the plan it reports is
 * exactly what the apply would do, failures included. Deletion only with `prune`.
 */
import { parse as parseYaml } from 'yaml';
import { VipdipError, isVipdipError } from '../core/errors.ts';
import {
  cidrContains,
  cidrContainsCidr,
  cidrsOverlap,
  formatCidr,
  parseCidr,
  parseIpv4,
  type Cidr,
} from '../core/ip.ts';
import {
  checkDnsLabel,
  checkName,
  checkSpaceBlock,
  checkSubscriptionName,
  checkImageName,
  checkServiceEndpoints,
  normalizeEndpoints,
  normalizeImage,
  parseWorkload,
  type Cloud,
  type Endpoint,
} from '../lifecycle/index.ts';

export interface TopologyVm {
  name: string;
  subnet: string;
  staticDip?: string | null;
  ilpip?: boolean;
  workload?: string | null;
  endpoints?: unknown[];
}
export interface TopologyService {
  name: string;
  vnet?: string | null;
  reservedIp?: string | null;
  vms?: TopologyVm[];
}
export interface TopologyVnet {
  name: string;
  addressSpace: string[];
  subnets?: { name: string; cidr: string }[];
  dipPolicy?: 'random' | 'sequential';
  movePolicy?: 'redraw' | 'keep';
}
export interface TopologySubscription {
  name: string;
  virtualNetworks?: TopologyVnet[];
  reservedIps?: { name: string }[];
  cloudServices?: TopologyService[];
}
export interface TopologyImage {
  name: string;
  command: string;
  env?: Record<string, string>;
}
export interface Topology {
  /** Workload images; the operator's only. */
  images?: TopologyImage[];
  publicPools?: string[];
  fabric?: { racks: { name: string; hosts: string[] }[] };
  subscriptions?: TopologySubscription[];
}

export interface Change {
  action: 'create' | 'update' | 'delete' | 'associate' | 'disassociate';
  kind: string;
  name: string;
  detail?: string;
}

export interface ApplyResult {
  dryRun: boolean;
  changes: Change[];
  /** What the document does not name, deleted only with prune. */
  wouldDelete: Change[];
}

export interface ApplyOptions {
  dryRun?: boolean;
  prune?: boolean;
  /** Operator tokens may declare pools and fabric; a subscription token only its own subscription. */
  operator?: boolean;
  subscription?: string;
}

interface Problem {
  path: string;
  message: string;
}

/** Parses a document (YAML is a superset of JSON); a syntax error names its line. */
export function parseTopology(body: unknown): Topology {
  let doc: unknown = body;
  if (typeof body === 'string') {
    try {
      doc = parseYaml(body, { maxAliasCount: 100 });
    } catch (e) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `the topology is not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`,
      );
    }
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      'a topology is a mapping with subscriptions (and optionally publicPools and fabric)',
    );
  }
  return doc;
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks the whole document and returns every problem found, each with its path. */
export function validateTopology(doc: Topology, opts: ApplyOptions = {}): Problem[] {
  const problems: Problem[] = [];
  const add = (path: string, message: string): void => {
    problems.push({ path, message });
  };
  const attempt = (path: string, fn: () => void) => {
    try {
      fn();
    } catch (e) {
      add(path, isVipdipError(e) ? e.detail : (e as Error).message);
    }
  };
  const list = (v: unknown, path: string): unknown[] => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      add(path, 'must be a list');
      return [];
    }
    return v as unknown[];
  };
  const known = (o: Record<string, unknown>, path: string, keys: string[]) => {
    for (const k of Object.keys(o)) if (!keys.includes(k)) add(`${path}.${k}`, 'unknown field');
  };
  const unique = (names: unknown[], path: string, what: string) => {
    const seen = new Set<unknown>();
    names.forEach((n, i) => {
      if (seen.has(n)) add(`${path}[${i}].name`, `${what} ${String(n)} is named twice`);
      seen.add(n);
    });
  };

  known(doc as Record<string, unknown>, '', ['images', 'publicPools', 'fabric', 'subscriptions']);
  const images = list(doc.images, 'images');
  if (images.length > 0 && opts.operator === false) add('images', 'only the operator may declare images');
  unique(
    images.map((m) => (isObj(m) ? m.name : undefined)),
    'images',
    'image',
  );
  images.forEach((m, i) => {
    const path = `images[${i}]`;
    if (!isObj(m)) return add(path, 'must be a mapping with name, command and optionally env');
    known(m, path, ['name', 'command', 'env']);
    attempt(`${path}.name`, () => checkImageName(m.name));
    attempt(path, () => normalizeImage(String(m.name), m));
  });
  const pools = list(doc.publicPools, 'publicPools');
  if (pools.length > 0 && opts.operator === false)
    add('publicPools', 'only the operator may declare public pools');
  const poolCidrs: Cidr[] = [];
  pools.forEach((p, i) => attempt(`publicPools[${i}]`, () => poolCidrs.push(parseCidr(p as string))));
  if (doc.fabric !== undefined) {
    if (opts.operator === false) add('fabric', 'only the operator may declare the fabric');
    if (!isObj(doc.fabric)) add('fabric', 'must be a mapping with racks');
    else {
      const hosts = new Set<string>();
      list(doc.fabric.racks, 'fabric.racks').forEach((r, i) => {
        const path = `fabric.racks[${i}]`;
        if (!isObj(r)) return add(path, 'must be a mapping with name and hosts');
        attempt(`${path}.name`, () => checkName('rack', r.name));
        list(r.hosts, `${path}.hosts`).forEach((h, j) => {
          attempt(`${path}.hosts[${j}]`, () => checkName('host', h));
          if (hosts.has(h as string)) add(`${path}.hosts[${j}]`, `host ${String(h)} is named twice`);
          hosts.add(h as string);
        });
      });
    }
  }

  const subs = list(doc.subscriptions, 'subscriptions');
  unique(
    subs.map((s) => (isObj(s) ? s.name : undefined)),
    'subscriptions',
    'subscription',
  );
  const serviceNames = new Map<string, string>();
  subs.forEach((s, i) => {
    const path = `subscriptions[${i}]`;
    if (!isObj(s)) return add(path, 'must be a mapping');
    known(s, path, ['name', 'virtualNetworks', 'reservedIps', 'cloudServices']);
    attempt(`${path}.name`, () => checkSubscriptionName(s.name));
    if (opts.subscription !== undefined && s.name !== opts.subscription) {
      add(`${path}.name`, `subscription ${String(s.name)} does not exist`);
    }
    const vnets = new Map<string, Map<string, Cidr>>();
    const vnetList = list(s.virtualNetworks, `${path}.virtualNetworks`);
    unique(
      vnetList.map((v) => (isObj(v) ? v.name : undefined)),
      `${path}.virtualNetworks`,
      'virtual network',
    );
    vnetList.forEach((v, j) => {
      const vp = `${path}.virtualNetworks[${j}]`;
      if (!isObj(v)) return add(vp, 'must be a mapping');
      known(v, vp, ['name', 'addressSpace', 'subnets', 'dipPolicy', 'movePolicy']);
      attempt(`${vp}.name`, () => checkName('virtual network', v.name));
      if (v.dipPolicy !== undefined && v.dipPolicy !== 'random' && v.dipPolicy !== 'sequential') {
        add(`${vp}.dipPolicy`, 'must be random or sequential');
      }
      if (v.movePolicy !== undefined && v.movePolicy !== 'redraw' && v.movePolicy !== 'keep') {
        add(`${vp}.movePolicy`, 'must be redraw or keep');
      }
      const space: Cidr[] = [];
      const spaceList = list(v.addressSpace, `${vp}.addressSpace`);
      if (spaceList.length === 0) add(`${vp}.addressSpace`, 'must list at least one CIDR block');
      spaceList.forEach((c, k) =>
        attempt(`${vp}.addressSpace[${k}]`, () =>
          space.push(checkSpaceBlock('address space', parseCidr(c as string))),
        ),
      );
      const subnets = new Map<string, Cidr>();
      list(v.subnets, `${vp}.subnets`).forEach((sn, k) => {
        const sp = `${vp}.subnets[${k}]`;
        if (!isObj(sn)) return add(sp, 'must be a mapping with name and cidr');
        known(sn, sp, ['name', 'cidr']);
        attempt(`${sp}.name`, () => checkName('subnet', sn.name));
        if (subnets.has(sn.name as string)) add(`${sp}.name`, `subnet ${String(sn.name)} is named twice`);
        attempt(`${sp}.cidr`, () => {
          const c = parseCidr(sn.cidr as string);
          if (space.length > 0 && !space.some((x) => cidrContainsCidr(x, c))) {
            throw new Error(`${String(sn.cidr)} is outside the address space`);
          }
          for (const [other, oc] of subnets) {
            if (cidrsOverlap(oc, c)) throw new Error(`${String(sn.cidr)} overlaps subnet ${other}`);
          }
          subnets.set(sn.name as string, c);
        });
      });
      vnets.set(v.name as string, subnets);
    });
    const rips = list(s.reservedIps, `${path}.reservedIps`);
    unique(
      rips.map((r) => (isObj(r) ? r.name : undefined)),
      `${path}.reservedIps`,
      'reserved IP',
    );
    const ripNames = new Set<unknown>();
    rips.forEach((r, j) => {
      const rp = `${path}.reservedIps[${j}]`;
      if (!isObj(r)) return add(rp, 'must be a mapping with a name');
      known(r, rp, ['name']);
      attempt(`${rp}.name`, () => checkName('reserved IP', r.name));
      ripNames.add(r.name);
    });
    const ripUsers = new Map<unknown, string>();
    list(s.cloudServices, `${path}.cloudServices`).forEach((svc, j) => {
      const cp = `${path}.cloudServices[${j}]`;
      if (!isObj(svc)) return add(cp, 'must be a mapping');
      known(svc, cp, ['name', 'vnet', 'reservedIp', 'vms']);
      attempt(`${cp}.name`, () => checkDnsLabel('cloud service', svc.name));
      const prev = serviceNames.get(svc.name as string);
      if (prev !== undefined)
        add(`${cp}.name`, `cloud service ${String(svc.name)} is also declared at ${prev}`);
      serviceNames.set(svc.name as string, cp);
      if (svc.reservedIp != null) {
        if (!ripNames.has(svc.reservedIp))
          add(
            `${cp}.reservedIp`,
            `reserved IP ${JSON.stringify(svc.reservedIp)} is not declared in this subscription`,
          );
        const user = ripUsers.get(svc.reservedIp);
        if (user !== undefined)
          add(`${cp}.reservedIp`, `reserved IP ${JSON.stringify(svc.reservedIp)} is already used by ${user}`);
        ripUsers.set(svc.reservedIp, String(svc.name));
      }
      const subnets = svc.vnet == null ? undefined : vnets.get(svc.vnet as string);
      if (svc.vnet != null && subnets === undefined)
        add(`${cp}.vnet`, `virtual network ${JSON.stringify(svc.vnet)} is not declared in this subscription`);
      const vms = list(svc.vms, `${cp}.vms`);
      unique(
        vms.map((v) => (isObj(v) ? v.name : undefined)),
        `${cp}.vms`,
        'VM',
      );
      const eps: { name: string; endpoints: Endpoint[] }[] = [];
      vms.forEach((vm, k) => {
        const mp = `${cp}.vms[${k}]`;
        if (!isObj(vm)) return add(mp, 'must be a mapping');
        known(vm, mp, ['name', 'subnet', 'staticDip', 'ilpip', 'workload', 'endpoints']);
        attempt(`${mp}.name`, () => checkDnsLabel('VM', vm.name));
        if (svc.vnet == null)
          add(mp, `cloud service ${String(svc.name)} has no vnet, so its VMs have no subnet`);
        const subnet = subnets?.get(vm.subnet as string);
        if (subnets !== undefined && subnet === undefined)
          add(
            `${mp}.subnet`,
            `subnet ${String(vm.subnet)} is not in virtual network ${JSON.stringify(svc.vnet)}`,
          );
        if (vm.staticDip != null) {
          attempt(`${mp}.staticDip`, () => {
            const ip = parseIpv4(vm.staticDip as string);
            if (subnet !== undefined && !cidrContains(subnet, ip))
              throw new Error(`${String(vm.staticDip)} is outside subnet ${String(vm.subnet)}`);
          });
        }
        if (vm.ilpip !== undefined && typeof vm.ilpip !== 'boolean')
          add(`${mp}.ilpip`, 'must be true or false');
        if (vm.workload != null) {
          if (typeof vm.workload !== 'string' || vm.workload.length === 0)
            add(`${mp}.workload`, 'must name an image');
          else
            attempt(`${mp}.workload`, () => {
              const ref = parseWorkload(vm.workload as string);
              if (ref.kind === 'command' && opts.operator === false)
                throw new Error('only the operator may give a VM a command; choose an image');
            });
        }
        attempt(`${mp}.endpoints`, () =>
          eps.push({ name: String(vm.name), endpoints: normalizeEndpoints(vm.endpoints, 'endpoints') }),
        );
      });
      attempt(`${cp}.vms`, () => checkServiceEndpoints(String(svc.name), eps));
    });
  });
  return problems;
}

/** Thrown at the end of a dry run to roll its batch back. */
class DryRunRollback extends Error {}

/** Validates, then creates and updates what the document names, all in one transaction. */
export async function applyTopology(
  cloud: Cloud,
  doc: Topology,
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const problems = validateTopology(doc, opts);
  if (problems.length > 0) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `the topology has ${problems.length} problem${problems.length === 1 ? '' : 's'}: ${problems
        .slice(0, 5)
        .map((p) => `${p.path}: ${p.message}`)
        .join('; ')}${problems.length > 5 ? '; …' : ''}`,
      { errors: problems },
    );
  }
  const result: ApplyResult = { dryRun: opts.dryRun === true, changes: [], wouldDelete: [] };
  try {
    await cloud.batch(async () => {
      await reconcile(cloud, doc, opts, result);
      if (opts.dryRun === true) throw new DryRunRollback();
    });
  } catch (e) {
    if (!(e instanceof DryRunRollback)) throw e;
  }
  return result;
}

async function reconcile(cloud: Cloud, doc: Topology, opts: ApplyOptions, out: ApplyResult): Promise<void> {
  const change = (c: Change) => out.changes.push(c);
  const commands = opts.operator !== false;
  if ((doc.images ?? []).length > 0) {
    const have = new Map((await cloud.listImages()).map((m) => [m.name, m]));
    for (const m of doc.images ?? []) {
      const want = normalizeImage(m.name, m);
      const cur = have.get(m.name);
      if (cur === undefined) {
        await cloud.createImage(m.name, want);
        change({ action: 'create', kind: 'image', name: m.name });
      } else if (cur.command !== want.command || JSON.stringify(cur.env) !== JSON.stringify(want.env)) {
        await cloud.updateImage(m.name, want);
        change({ action: 'update', kind: 'image', name: m.name });
      }
    }
  }
  const pools = new Set((await cloud.listPools()).map((p) => p.cidr));
  for (const p of doc.publicPools ?? []) {
    const cidr = formatCidr(parseCidr(p));
    if (!pools.has(cidr)) {
      await cloud.addPublicPool(cidr);
      change({ action: 'create', kind: 'public pool', name: cidr });
    }
  }
  const hosts = new Map((await cloud.listHosts()).map((h) => [h.name, h.rack]));
  for (const rack of doc.fabric?.racks ?? []) {
    for (const h of rack.hosts) {
      const now = hosts.get(h);
      // A host's rack is its failure domain: moving one would silently change what maintenance of
      // either rack takes down, so apply refuses it rather than ignoring it.
      if (now !== undefined && now !== rack.name) {
        throw new VipdipError(
          'CONFLICT',
          `host ${h} is in rack ${now}, not ${rack.name}: apply does not move hosts between racks (delete the host and add it again)`,
        );
      }
      if (now !== undefined) continue;
      await cloud.addHost(h, rack.name);
      change({ action: 'create', kind: 'host', name: h, detail: `in rack ${rack.name}` });
    }
  }

  const existingSubs = new Set((await cloud.listSubscriptions()).map((s) => s.name));
  for (const s of doc.subscriptions ?? []) {
    if (!existingSubs.has(s.name)) {
      if (opts.operator === false)
        throw new VipdipError('NOT_FOUND', `subscription ${s.name} does not exist`);
      await cloud.createSubscription(s.name);
      change({ action: 'create', kind: 'subscription', name: s.name });
    }
    const vnets = new Map((await cloud.listVnets(s.name)).map((v) => [v.name, v]));
    for (const v of s.virtualNetworks ?? []) {
      const cur = vnets.get(v.name);
      const name = `${s.name}/${v.name}`;
      if (cur === undefined) {
        await cloud.createVnet(s.name, {
          name: v.name,
          addressSpace: v.addressSpace,
          subnets: v.subnets ?? [],
          ...(v.dipPolicy ? { dipPolicy: v.dipPolicy } : {}),
          ...(v.movePolicy ? { movePolicy: v.movePolicy } : {}),
        });
        change({ action: 'create', kind: 'virtual network', name });
        continue;
      }
      const want = v.addressSpace
        .map((c) => formatCidr(parseCidr(c)))
        .sort()
        .join(',');
      if (want !== [...cur.addressSpace].sort().join(',')) {
        throw new VipdipError(
          'CONFLICT',
          `virtual network ${name}: changing the address space (${cur.addressSpace.join(', ')}) is not supported; delete and recreate it`,
        );
      }
      const dip = v.dipPolicy ?? 'random';
      const move = v.movePolicy ?? 'redraw';
      if (dip !== cur.dipPolicy || move !== cur.movePolicy) {
        await cloud.setVnetPolicy(s.name, v.name, { dipPolicy: dip, movePolicy: move });
        change({
          action: 'update',
          kind: 'virtual network',
          name,
          detail: `dipPolicy ${dip}, movePolicy ${move}`,
        });
      }
      const curSubnets = new Map(cur.subnets.map((x) => [x.name, x]));
      for (const sn of v.subnets ?? []) {
        const have = curSubnets.get(sn.name);
        if (have === undefined) {
          await cloud.addSubnet(s.name, v.name, sn);
          change({ action: 'create', kind: 'subnet', name: `${name}/${sn.name}`, detail: sn.cidr });
        } else if (have.cidr !== sn.cidr) {
          throw new VipdipError(
            'CONFLICT',
            `subnet ${name}/${sn.name} is ${have.cidr}; changing it to ${sn.cidr} means deleting and recreating it`,
          );
        }
      }
      for (const have of cur.subnets) {
        if (!(v.subnets ?? []).some((x) => x.name === have.name)) {
          await prune(out, opts, { action: 'delete', kind: 'subnet', name: `${name}/${have.name}` }, () =>
            cloud.deleteSubnet(s.name, v.name, have.name),
          );
        }
      }
    }

    const rips = new Map((await cloud.listReservedIps(s.name)).map((r) => [r.name, r]));
    for (const r of s.reservedIps ?? []) {
      if (!rips.has(r.name)) {
        const made = await cloud.createReservedIp(s.name, r.name);
        change({ action: 'create', kind: 'reserved IP', name: `${s.name}/${r.name}`, detail: made.address });
      }
    }

    const services = new Map((await cloud.listServices(s.name)).map((x) => [x.name, x]));
    // New VMs with a static DIP claim it when created; those that draw start only after every
    // static DIP of the subscription is claimed, so no draw takes one first (SPEC R4).
    const toStart: { service: string; vm: string }[] = [];
    for (const svc of s.cloudServices ?? []) {
      let cur = services.get(svc.name);
      if (cur === undefined) {
        cur = await cloud.createService(s.name, {
          name: svc.name,
          vnet: svc.vnet ?? null,
          reservedIp: svc.reservedIp ?? null,
        });
        change({ action: 'create', kind: 'cloud service', name: svc.name });
      } else {
        if ((svc.vnet ?? null) !== cur.vnet) {
          throw new VipdipError(
            'CONFLICT',
            `cloud service ${svc.name} is bound to virtual network ${cur.vnet ?? 'none'}; changing it means deleting and recreating the service`,
          );
        }
        const want = svc.reservedIp ?? null;
        if (want !== cur.reservedIp) {
          if (cur.reservedIp !== null) {
            await cloud.disassociateReservedIp(s.name, cur.reservedIp);
            change({
              action: 'disassociate',
              kind: 'reserved IP',
              name: `${s.name}/${cur.reservedIp}`,
              detail: `from ${svc.name}`,
            });
          }
          if (want !== null) {
            await cloud.associateReservedIp(s.name, want, svc.name);
            change({
              action: 'associate',
              kind: 'reserved IP',
              name: `${s.name}/${want}`,
              detail: `with ${svc.name}`,
            });
          }
        }
      }
      const vms = new Map((await cloud.listVms({ service: svc.name })).map((x) => [x.name, x]));
      for (const vm of svc.vms ?? []) {
        const have = vms.get(vm.name);
        const name = `${svc.name}/${vm.name}`;
        if (have === undefined) {
          const drawn = vm.staticDip == null;
          await cloud.createVm(
            svc.name,
            {
              name: vm.name,
              subnet: vm.subnet,
              staticDip: vm.staticDip ?? null,
              ilpip: vm.ilpip === true,
              workload: vm.workload ?? null,
              endpoints: vm.endpoints ?? [],
            },
            { start: !drawn, commands },
          );
          if (drawn) toStart.push({ service: svc.name, vm: vm.name });
          change({ action: 'create', kind: 'VM', name });
          continue;
        }
        if (have.subnet !== vm.subnet) {
          throw new VipdipError(
            'CONFLICT',
            `VM ${name} is in subnet ${have.subnet}; moving it to ${vm.subnet} means deleting and recreating it`,
          );
        }
        const patch: Parameters<Cloud['updateVm']>[1] = {};
        const endpoints = normalizeEndpoints(vm.endpoints ?? []);
        if (JSON.stringify(endpoints) !== JSON.stringify(have.endpoints)) patch.endpoints = endpoints;
        if ((vm.workload ?? null) !== have.workload) patch.workload = vm.workload ?? null;
        if ((vm.ilpip === true) !== have.ilpipEnabled) patch.ilpip = vm.ilpip === true;
        if ((vm.staticDip ?? null) !== have.staticDip) patch.staticDip = vm.staticDip ?? null;
        if (Object.keys(patch).length > 0) {
          await cloud.updateVm({ service: svc.name, vm: vm.name }, patch, undefined, { commands });
          change({ action: 'update', kind: 'VM', name, detail: Object.keys(patch).join(', ') });
        }
      }
      for (const have of vms.values()) {
        if (!(svc.vms ?? []).some((x) => x.name === have.name)) {
          await prune(
            out,
            opts,
            { action: 'delete', kind: 'VM', name: `${svc.name}/${have.name}` },
            async () => {
              await cloud.vmOperation({ service: svc.name, vm: have.name }, 'delete', 'pruned by apply');
            },
          );
        }
      }
    }
    for (const cur of services.values()) {
      if (!(s.cloudServices ?? []).some((x) => x.name === cur.name)) {
        await prune(out, opts, { action: 'delete', kind: 'cloud service', name: cur.name }, () =>
          cloud.deleteService(cur.name),
        );
      }
    }
    for (const ref of toStart) await cloud.vmOperation(ref, 'start', 'create');
    for (const r of rips.values()) {
      if (!(s.reservedIps ?? []).some((x) => x.name === r.name)) {
        await prune(out, opts, { action: 'delete', kind: 'reserved IP', name: `${s.name}/${r.name}` }, () =>
          cloud.deleteReservedIp(s.name, r.name),
        );
      }
    }
    for (const v of vnets.values()) {
      if (!(s.virtualNetworks ?? []).some((x) => x.name === v.name)) {
        await prune(
          out,
          opts,
          { action: 'delete', kind: 'virtual network', name: `${s.name}/${v.name}` },
          () => cloud.deleteVnet(s.name, v.name),
        );
      }
    }
  }
}

async function prune(
  out: ApplyResult,
  opts: ApplyOptions,
  c: Change,
  run: () => Promise<void>,
): Promise<void> {
  if (opts.prune !== true) {
    out.wouldDelete.push(c);
    return;
  }
  await run();
  out.changes.push(c);
}
