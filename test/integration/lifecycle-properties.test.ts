/**
 * Property tests of the lifecycle: random sequences of every operation on a deliberately cramped
 * topology (a /29 and a /28 subnet per network, a /29 public pool of six addresses), so that
 * exhaustion, static-DIP collisions and reserved-IP conflicts really happen. After every step the
 * invariants I1–I6 hold (fsck, and independently from the views); every outcome is the one the
 * rules predict; a refused operation leaves the store and the allocation indexes exactly as they
 * were; and addresses change only where R1–R8 allow.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  blockSize,
  formatIpv4,
  isVipdipError,
  parseCidr,
  parseIpv4,
  type ErrorCode,
  type Ipv4,
} from '../../src/core/index.ts';
import {
  formatFinding,
  fsck,
  parseScope,
  type PoolView,
  type ReservedIpView,
  type ServiceView,
  type VmOperation,
  type VmState,
  type VmView,
  type VnetView,
} from '../../src/lifecycle/index.ts';
import { DIALECTS, dumpStore, makeDialectCloud, type Dialect, type DialectCloud } from '../support/cloud.ts';
import { usePostgres } from '../support/postgres.ts';

// ------------------------------------------------------------------ the model's universe

const SUB = 'contoso';
const POOL = '127.100.0.0/29'; // six usable public addresses
const SUBNETS = ['small', 'mid'] as const;
type SubnetName = (typeof SUBNETS)[number];

interface NetSpec {
  space: string;
  subnets: Record<SubnetName, string>;
  movePolicy: 'redraw' | 'keep';
  dipPolicy: 'random' | 'sequential';
}
const NETS: Record<string, NetSpec> = {
  'net-redraw': {
    space: '127.16.0.0/24',
    subnets: { small: '127.16.0.0/29', mid: '127.16.0.16/28' },
    movePolicy: 'redraw',
    dipPolicy: 'random',
  },
  'net-keep': {
    space: '127.17.0.0/24',
    subnets: { small: '127.17.0.0/29', mid: '127.17.0.16/28' },
    movePolicy: 'keep',
    dipPolicy: 'sequential',
  },
};
const SERVICES = ['alpha', 'beta', 'gamma'] as const;
const SERVICE_NET: Record<string, string> = { alpha: 'net-redraw', beta: 'net-redraw', gamma: 'net-keep' };
const VM_NAMES = ['a', 'b', 'c', 'd', 'e'] as const;
const RIPS = ['r1', 'r2'] as const;
const HOSTS = ['rack1-host1', 'rack1-host2', 'rack2-host1', 'rack2-host2'] as const;
const RACKS = ['rack1', 'rack2'] as const;
/** Every VM operation; start and deallocate twice as often, so that addresses churn. */
const OPS: readonly VmOperation[] = [
  'start',
  'start',
  'stop',
  'deallocate',
  'deallocate',
  'restart',
  'redeploy',
  'delete',
];
/** A static DIP is one of the first three usable addresses of its subnet: collisions are likely. */
const STATIC_SLOTS = 3;

/** The address a static slot names in a subnet of a network. */
function staticAddress(net: string, subnet: SubnetName, slot: number): string {
  const cidr = parseCidr(NETS[net]!.subnets[subnet]);
  return formatIpv4((cidr.base + 4 + slot) as Ipv4);
}

// ------------------------------------------------------------------ commands

type Cmd =
  | {
      kind: 'createVm';
      service: string;
      vm: string;
      subnet: SubnetName;
      staticSlot: number | null;
      ilpip: boolean;
      start: boolean;
    }
  | { kind: 'vmOp'; service: string; vm: string; pick: number | null; op: VmOperation }
  | { kind: 'setIlpip'; service: string; vm: string; pick: number | null; ilpip: boolean }
  | { kind: 'setStaticDip'; service: string; vm: string; pick: number | null; staticSlot: number | null }
  | { kind: 'maintainHost'; host: string }
  | { kind: 'maintainRack'; rack: string }
  | { kind: 'createRip'; name: string }
  | { kind: 'associateRip'; name: string; service: string }
  | { kind: 'disassociateRip'; name: string }
  | { kind: 'reserveVip'; service: string; name: string }
  | { kind: 'deleteRip'; name: string }
  | { kind: 'createService'; service: string; reservedIp: string | null }
  | { kind: 'deleteService'; service: string };

const service = fc.constantFrom(...SERVICES);
const vmName = fc.constantFrom(...VM_NAMES);
const ripName = fc.constantFrom(...RIPS);
/** Most VM operations pick an existing VM (by index); the rest name one that may not exist. */
const pick = fc.option(fc.nat(), { freq: 6 });
const slot = fc.option(fc.integer({ min: 0, max: STATIC_SLOTS - 1 }), { freq: 3 });

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 16,
    arbitrary: fc.record({
      kind: fc.constant('createVm' as const),
      service,
      vm: vmName,
      subnet: fc.constantFrom<SubnetName>('small', 'small', 'mid'),
      staticSlot: slot,
      ilpip: fc.boolean(),
      start: fc.constantFrom(true, true, true, false),
    }),
  },
  {
    weight: 24,
    arbitrary: fc.record({
      kind: fc.constant('vmOp' as const),
      service,
      vm: vmName,
      pick,
      op: fc.constantFrom(...OPS),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('setIlpip' as const),
      service,
      vm: vmName,
      pick,
      ilpip: fc.boolean(),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('setStaticDip' as const),
      service,
      vm: vmName,
      pick,
      staticSlot: slot,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('maintainHost' as const), host: fc.constantFrom(...HOSTS) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('maintainRack' as const), rack: fc.constantFrom(...RACKS) }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('createRip' as const), name: ripName }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('associateRip' as const), name: ripName, service }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('disassociateRip' as const), name: ripName }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('reserveVip' as const), service, name: ripName }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('deleteRip' as const), name: ripName }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('createService' as const),
      service,
      reservedIp: fc.option(ripName, { freq: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteService' as const), service }) },
);

async function setUp(t: DialectCloud): Promise<void> {
  const { cloud } = t;
  await cloud.createSubscription(SUB);
  for (const [name, net] of Object.entries(NETS)) {
    await cloud.createVnet(SUB, {
      name,
      addressSpace: [net.space],
      subnets: SUBNETS.map((s) => ({ name: s, cidr: net.subnets[s] })),
      movePolicy: net.movePolicy,
      dipPolicy: net.dipPolicy,
    });
  }
  for (const s of SERVICES) await cloud.createService(SUB, { name: s, vnet: SERVICE_NET[s]! });
}

/**
 * Turns a command that picks an existing VM by index into one that names it, and a service creation
 * into one of a missing service when one is missing (deletions would otherwise win).
 */
function resolve(c: Cmd, vms: readonly VmView[], services: readonly ServiceView[]): Cmd {
  if (c.kind === 'createService' && services.some((s) => s.name === c.service)) {
    const missing = SERVICES.find((n) => !services.some((s) => s.name === n));
    return missing === undefined ? c : { ...c, service: missing };
  }
  if (!('pick' in c) || c.pick === null || vms.length === 0) return c;
  const vm = vms[c.pick % vms.length]!;
  return { ...c, service: vm.service, vm: vm.name, pick: null };
}

async function run(t: DialectCloud, c: Cmd): Promise<void> {
  const { cloud } = t;
  const ref = (s: string, vm: string) => ({ service: s, vm, subscription: SUB });
  switch (c.kind) {
    case 'createVm': {
      const net = SERVICE_NET[c.service]!;
      await cloud.createVm(
        c.service,
        {
          name: c.vm,
          subnet: c.subnet,
          staticDip: c.staticSlot === null ? null : staticAddress(net, c.subnet, c.staticSlot),
          ilpip: c.ilpip,
        },
        { subscription: SUB, start: c.start },
      );
      return;
    }
    case 'vmOp': {
      const shown = await cloud.vmOperation(ref(c.service, c.vm), c.op);
      // What an operation answers is what a read afterwards says.
      if (shown === null)
        await assert.rejects(cloud.getVm(ref(c.service, c.vm)), (e) => isVipdipError(e, 'NOT_FOUND'));
      else assert.deepEqual(shown, await cloud.getVm(ref(c.service, c.vm)), `the view ${c.op} returned`);
      return;
    }
    case 'setIlpip':
      await cloud.updateVm(ref(c.service, c.vm), { ilpip: c.ilpip });
      return;
    case 'setStaticDip': {
      const vm = await cloud.getVm(ref(c.service, c.vm)).catch((e: unknown) => {
        if (isVipdipError(e, 'NOT_FOUND')) return undefined; // updateVm answers it too
        throw e;
      });
      const subnet = (vm?.subnet ?? 'small') as SubnetName;
      const addr =
        c.staticSlot === null ? null : staticAddress(SERVICE_NET[c.service]!, subnet, c.staticSlot);
      await cloud.updateVm(ref(c.service, c.vm), { staticDip: addr });
      return;
    }
    case 'maintainHost':
      await cloud.maintenance({ host: c.host });
      return;
    case 'maintainRack':
      await cloud.maintenance({ rack: c.rack });
      return;
    case 'createRip':
      await cloud.createReservedIp(SUB, c.name);
      return;
    case 'associateRip':
      await cloud.associateReservedIp(SUB, c.name, c.service);
      return;
    case 'disassociateRip':
      await cloud.disassociateReservedIp(SUB, c.name);
      return;
    case 'reserveVip':
      await cloud.reserveServiceVip(SUB, c.service, c.name);
      return;
    case 'deleteRip':
      await cloud.deleteReservedIp(SUB, c.name);
      return;
    case 'createService':
      await cloud.createService(SUB, {
        name: c.service,
        vnet: SERVICE_NET[c.service]!,
        reservedIp: c.reservedIp,
      });
      return;
    case 'deleteService':
      await cloud.deleteService(c.service, SUB);
      return;
  }
}

// ------------------------------------------------------------------ snapshots and invariants

interface Snapshot {
  vms: VmView[];
  services: ServiceView[];
  rips: ReservedIpView[];
  pools: PoolView[];
  vnets: VnetView[];
  dump: string;
}

async function snapshot(t: DialectCloud): Promise<Snapshot> {
  const { cloud } = t;
  return {
    vms: await cloud.listVms(),
    services: await cloud.listServices(),
    rips: await cloud.listReservedIps(),
    pools: await cloud.listPools(),
    vnets: await cloud.listVnets(),
    dump: await dumpStore(t.store),
  };
}

const isAllocated = (v: VmView) => v.state === 'running' || v.state === 'stopped';
const vmKey = (v: { service: string; name: string }) => `${v.service}/${v.name}`;
const findVm = (s: Snapshot, service: string, name: string) =>
  s.vms.find((v) => v.service === service && v.name === name);
const findService = (s: Snapshot, name: string) => s.services.find((x) => x.name === name);
const findRip = (s: Snapshot, name: string) => s.rips.find((r) => r.name === name);
const subnetView = (s: Snapshot, vnet: string, subnet: string) =>
  s.vnets.find((n) => n.name === vnet)?.subnets.find((x) => x.name === subnet);
const hasAllocatedVm = (s: Snapshot, service: string) =>
  s.vms.some((v) => v.service === service && isAllocated(v));
const poolFree = (s: Snapshot) => s.pools.reduce((n, p) => n + p.free, 0);
/** The allocation indexes' counts: what a refused operation must leave exactly as they were. */
const counts = (s: Snapshot) => JSON.stringify({ pools: s.pools, vnets: s.vnets });

/** I1–I5 checked from the views alone, without fsck. */
function checkViews(s: Snapshot, where: string): void {
  // I5 and I1 for the public pool: VIPs, reserved IPs and ILPIPs.
  assert.equal(s.pools.length, 1, where);
  const pool = s.pools[0]!;
  const poolCidr = parseCidr(pool.cidr);
  assert.equal(pool.usable, blockSize(poolCidr.prefix) - 2, `${where}: usable addresses of ${pool.cidr}`);
  assert.equal(pool.bound + pool.free, pool.usable, `${where}: I5 ${pool.cidr} bound + free = usable`);
  const publicHolders = new Map<string, string>();
  const hold = (addr: string, who: string) => {
    const prev = publicHolders.get(addr);
    assert.equal(prev, undefined, `${where}: I1 ${addr} is held by ${prev} and ${who}`);
    publicHolders.set(addr, who);
    const n = parseIpv4(addr);
    assert.ok(
      n > poolCidr.base && n < poolCidr.base + blockSize(poolCidr.prefix) - 1,
      `${where}: ${who} holds ${addr}, not a usable address of ${pool.cidr}`,
    );
  };
  for (const r of s.rips) hold(r.address, `reserved IP ${r.name}`);
  for (const svc of s.services) {
    if (svc.reservedIp === null) {
      if (svc.vip !== null) hold(svc.vip, `service ${svc.name}`);
    } else {
      const r = findRip(s, svc.reservedIp);
      assert.ok(r, `${where}: service ${svc.name} uses missing reserved IP ${svc.reservedIp}`);
      assert.equal(svc.vip, r.address, `${where}: service ${svc.name} VIP is its reserved IP`);
      assert.equal(r.service, svc.name, `${where}: reserved IP ${r.name} points back to ${svc.name}`);
    }
    // I4
    const should = hasAllocatedVm(s, svc.name) || svc.reservedIp !== null;
    assert.equal(svc.vip !== null, should, `${where}: I4 service ${svc.name} vip=${svc.vip}`);
    assert.deepEqual(
      [...svc.vms].sort(),
      s.vms
        .filter((v) => v.service === svc.name)
        .map((v) => v.name)
        .sort(),
      `${where}: VMs of ${svc.name}`,
    );
  }
  for (const r of s.rips) {
    if (r.service !== null)
      assert.equal(findService(s, r.service)?.reservedIp, r.name, `${where}: reserved IP ${r.name}`);
  }
  for (const v of s.vms) if (v.ilpip !== null) hold(v.ilpip, `VM ${vmKey(v)} (ILPIP)`);
  assert.equal(pool.bound, publicHolders.size, `${where}: I5 bound count of ${pool.cidr}`);

  // I2, I3 and I1/I5 for subnets.
  const dipHolders = new Map<string, string>();
  const boundPerSubnet = new Map<string, number>();
  for (const v of s.vms) {
    const k = vmKey(v);
    assert.equal(v.dip !== null, isAllocated(v), `${where}: I3 VM ${k} is ${v.state} with dip ${v.dip}`);
    assert.equal(v.host !== null, isAllocated(v), `${where}: VM ${k} is ${v.state} on host ${v.host}`);
    assert.equal(
      v.ilpip !== null,
      isAllocated(v) && v.ilpipEnabled,
      `${where}: VM ${k} (${v.state}, ilpip ${v.ilpipEnabled}) holds ILPIP ${v.ilpip}`,
    );
    const sk = `${v.vnet}/${v.subnet}`;
    if (v.dip === null) {
      // A deallocated VM's static DIP stays its own (R4, I5): bound, and nobody else's DIP.
      if (v.staticDip !== null) {
        const prev = dipHolders.get(v.staticDip);
        assert.equal(prev, undefined, `${where}: I1 static DIP ${v.staticDip} of ${k} held by ${prev}`);
        dipHolders.set(v.staticDip, k);
        boundPerSubnet.set(sk, (boundPerSubnet.get(sk) ?? 0) + 1);
      }
      continue;
    }
    if (v.staticDip !== null) assert.equal(v.dip, v.staticDip, `${where}: VM ${k} has its static DIP`);
    const sn = subnetView(s, v.vnet, v.subnet);
    assert.ok(sn, `${where}: subnet of ${k}`);
    const cidr = parseCidr(sn.cidr);
    const off = parseIpv4(v.dip) - cidr.base;
    assert.ok(
      off >= 4 && off < blockSize(cidr.prefix) - 1,
      `${where}: I2 VM ${k} DIP ${v.dip} is not a usable address of ${sn.cidr}`,
    );
    const prev = dipHolders.get(v.dip);
    assert.equal(prev, undefined, `${where}: I1 DIP ${v.dip} held by ${prev} and ${k}`);
    dipHolders.set(v.dip, k);
    boundPerSubnet.set(sk, (boundPerSubnet.get(sk) ?? 0) + 1);
  }
  for (const n of s.vnets) {
    for (const sn of n.subnets) {
      const p = parseCidr(sn.cidr).prefix;
      assert.equal(sn.usable, blockSize(p) - 5, `${where}: usable of ${n.name}/${sn.name}`);
      assert.equal(sn.bound + sn.free, sn.usable, `${where}: I5 ${n.name}/${sn.name} bound + free`);
      assert.equal(
        sn.bound,
        boundPerSubnet.get(`${n.name}/${sn.name}`) ?? 0,
        `${where}: I5 ${n.name}/${sn.name}`,
      );
    }
  }
}

/** fsck finds nothing, and the in-memory indexes hold exactly the addresses the store binds. */
async function checkStore(t: DialectCloud, where: string): Promise<void> {
  const findings = await t.store.read((r) => fsck(r));
  assert.deepEqual(findings.map(formatFinding), [], `${where}: fsck`);
  const bindings = await t.store.read((r) => r.bindings());
  const perScope = new Map<string, number>();
  for (const b of bindings) {
    perScope.set(b.scope, (perScope.get(b.scope) ?? 0) + 1);
    const range = t.cloud.book.range(parseScope(b.scope));
    assert.ok(!range.isFree(b.address), `${where}: the index has bound ${b.scope} ${b.address} free`);
  }
  for (const [scope, range] of t.cloud.book.allRanges()) {
    assert.equal(range.boundCount, perScope.get(scope) ?? 0, `${where}: index bound count of ${scope}`);
  }
}

// ------------------------------------------------------------------ the oracle

type Outcome = { ok: true } | { ok: false; code: ErrorCode; mentions: string[] };
const OK: Outcome = { ok: true };
const refused = (code: ErrorCode, ...mentions: string[]): Outcome => ({ ok: false, code, mentions });

/** Which states each operation accepts (SPEC §2), and the state it leads to. */
const LEGAL: Record<VmOperation, Partial<Record<VmState, VmState | null>>> = {
  start: { deallocated: 'running', stopped: 'running' },
  stop: { running: 'stopped' },
  deallocate: { running: 'deallocated', stopped: 'deallocated' },
  restart: { running: 'running' },
  redeploy: { running: 'running', stopped: 'stopped' },
  delete: { running: null, stopped: null, deallocated: null },
};

/** Whether another VM holds an address of a subnet, as its DIP or as its reserved static DIP. */
const heldByAnother = (s: Snapshot, vnet: string, subnet: string, addr: string, self?: string) =>
  s.vms.some(
    (v) =>
      v.vnet === vnet && v.subnet === subnet && vmKey(v) !== self && (v.dip === addr || v.staticDip === addr),
  );

/**
 * What starting a deallocated VM needs: its DIP (a static one is held already, R4), then its ILPIP,
 * then the service's VIP.
 */
function startOutcome(
  s: Snapshot,
  svc: ServiceView,
  vm: { vnet: string; subnet: string; staticDip: string | null; ilpip: boolean },
): Outcome {
  if (vm.staticDip === null && subnetView(s, vm.vnet, vm.subnet)!.free === 0) {
    return refused('POOL_EXHAUSTED', `${vm.vnet}/${vm.subnet}`);
  }
  const need = (vm.ilpip ? 1 : 0) + (svc.vip === null ? 1 : 0);
  if (need > poolFree(s)) return refused('POOL_EXHAUSTED', POOL);
  return OK;
}

function expected(s: Snapshot, c: Cmd): Outcome {
  switch (c.kind) {
    case 'createVm': {
      const svc = findService(s, c.service);
      if (svc === undefined) return refused('NOT_FOUND', c.service);
      if (findVm(s, c.service, c.vm)) return refused('ALREADY_EXISTS', `${c.service}/${c.vm}`);
      const vnet = SERVICE_NET[c.service]!;
      const staticDip = c.staticSlot === null ? null : staticAddress(vnet, c.subnet, c.staticSlot);
      // A static DIP is claimed when the VM is created, started or not.
      if (staticDip !== null && heldByAnother(s, vnet, c.subnet, staticDip))
        return refused('ADDRESS_TAKEN', staticDip);
      if (!c.start) return OK;
      return startOutcome(s, svc, { vnet, subnet: c.subnet, staticDip, ilpip: c.ilpip });
    }
    case 'vmOp': {
      const svc = findService(s, c.service);
      const vm = findVm(s, c.service, c.vm);
      if (svc === undefined || vm === undefined) return refused('NOT_FOUND', c.service);
      if (!(vm.state in LEGAL[c.op])) return refused('INVALID_TRANSITION', `${c.service}/${c.vm}`, vm.state);
      if (c.op === 'start' && vm.state === 'deallocated') {
        return startOutcome(s, svc, { ...vm, ilpip: vm.ilpipEnabled });
      }
      return OK;
    }
    case 'setIlpip': {
      const vm = findVm(s, c.service, c.vm);
      if (vm === undefined) return refused('NOT_FOUND', c.service);
      if (c.ilpip && !vm.ilpipEnabled && isAllocated(vm) && poolFree(s) === 0)
        return refused('POOL_EXHAUSTED', POOL);
      return OK;
    }
    case 'setStaticDip': {
      const vm = findVm(s, c.service, c.vm);
      if (vm === undefined) return refused('NOT_FOUND', c.service);
      const next =
        c.staticSlot === null ? null : staticAddress(vm.vnet, vm.subnet as SubnetName, c.staticSlot);
      if (next !== vm.staticDip && isAllocated(vm)) return refused('INVALID_TRANSITION', vmKey(vm));
      if (next !== null && next !== vm.staticDip && heldByAnother(s, vm.vnet, vm.subnet, next, vmKey(vm)))
        return refused('ADDRESS_TAKEN', next);
      return OK;
    }
    case 'maintainHost':
    case 'maintainRack':
      return OK; // four hosts in two racks: there is always somewhere to go
    case 'createRip':
      if (findRip(s, c.name)) return refused('ALREADY_EXISTS', c.name);
      if (poolFree(s) === 0) return refused('POOL_EXHAUSTED', POOL);
      return OK;
    case 'deleteRip': {
      const r = findRip(s, c.name);
      if (r === undefined) return refused('NOT_FOUND', c.name);
      if (r.service !== null) return refused('IN_USE', c.name, r.service);
      return OK;
    }
    case 'associateRip': {
      const r = findRip(s, c.name);
      if (r === undefined) return refused('NOT_FOUND', c.name);
      const svc = findService(s, c.service);
      if (svc === undefined) return refused('NOT_FOUND', c.service);
      if (r.service === c.service) return OK;
      if (r.service !== null) return refused('IN_USE', c.name, r.service);
      if (svc.reservedIp !== null) return refused('CONFLICT', c.service);
      return OK;
    }
    case 'disassociateRip': {
      const r = findRip(s, c.name);
      if (r === undefined) return refused('NOT_FOUND', c.name);
      if (r.service === null) return refused('CONFLICT', c.name);
      if (hasAllocatedVm(s, r.service) && poolFree(s) === 0) return refused('POOL_EXHAUSTED', POOL);
      return OK;
    }
    case 'reserveVip': {
      const svc = findService(s, c.service);
      if (svc === undefined) return refused('NOT_FOUND', c.service);
      if (findRip(s, c.name)) return refused('ALREADY_EXISTS', c.name);
      if (svc.reservedIp !== null || svc.vip === null) return refused('CONFLICT', c.service);
      return OK;
    }
    case 'createService': {
      if (findService(s, c.service)) return refused('ALREADY_EXISTS', c.service);
      if (c.reservedIp === null) return OK;
      const r = findRip(s, c.reservedIp);
      if (r === undefined) return refused('NOT_FOUND', c.reservedIp);
      if (r.service !== null) return refused('IN_USE', c.reservedIp);
      return OK;
    }
    case 'deleteService':
      return findService(s, c.service) ? OK : refused('NOT_FOUND', c.service);
  }
}

// ------------------------------------------------------------------ the rules across one step

const targets = (c: Cmd, v: VmView) =>
  'vm' in c && c.kind !== 'createVm' && c.service === v.service && c.vm === v.name;
const vnetOf = (s: Snapshot, v: VmView) => s.vnets.find((n) => n.name === v.vnet)!;
/** A move (redeploy, maintenance) may redraw the DIP: not a static one, not in a `keep` network. */
const redrawsOnMove = (s: Snapshot, v: VmView) => v.staticDip === null && vnetOf(s, v).movePolicy !== 'keep';
const maintained = (c: Cmd, v: VmView) =>
  (c.kind === 'maintainHost' && v.host === c.host) || (c.kind === 'maintainRack' && v.rack === c.rack);

/** Checks a successful step against R1–R5 and R8, and the postconditions of the operation. */
function checkStep(c: Cmd, a: Snapshot, b: Snapshot, where: string): void {
  // VMs: state, DIP, host and ILPIP change only where the operation allows.
  for (const va of a.vms) {
    const k = vmKey(va);
    const vb = findVm(b, va.service, va.name);
    const op = c.kind === 'vmOp' && targets(c, va) ? c.op : undefined;
    const fromDeallocated = op === 'start' && va.state === 'deallocated';
    if (vb === undefined) {
      assert.ok(
        op === 'delete' || (c.kind === 'deleteService' && c.service === va.service),
        `${where}: VM ${k} disappeared`,
      );
      continue;
    }
    const wantState = op === undefined ? va.state : LEGAL[op][va.state];
    assert.equal(vb.state, wantState, `${where}: state of ${k}`);

    const moved = op === 'redeploy' || (maintained(c, va) && isAllocated(va));
    const dipMay =
      op === 'deallocate' || fromDeallocated || (moved && redrawsOnMove(a, va) && isAllocated(va));
    if (!dipMay) assert.equal(vb.dip, va.dip, `${where}: DIP of ${k} must not change (R4, R5, R8)`);
    const hostMay = op === 'deallocate' || fromDeallocated || moved;
    if (!hostMay) assert.equal(vb.host, va.host, `${where}: host of ${k} must not change`);
    if (moved) {
      assert.notEqual(vb.host, va.host, `${where}: ${k} moved to another host (R5)`);
      if (c.kind === 'maintainRack') assert.notEqual(vb.rack, c.rack, `${where}: ${k} left rack ${c.rack}`);
    }
    // A redraw draws before it releases, so with any free address in the subnet the DIP changes:
    // under redeploy and under host or rack maintenance alike.
    if (moved && redrawsOnMove(a, va) && isAllocated(va) && subnetView(a, va.vnet, va.subnet)!.free > 0) {
      assert.notEqual(vb.dip, va.dip, `${where}: ${op ?? 'maintenance'} redraws the DIP of ${k} (R5)`);
    }
    const ilpipMay = op === 'deallocate' || fromDeallocated || (c.kind === 'setIlpip' && targets(c, va));
    if (!ilpipMay) assert.equal(vb.ilpip, va.ilpip, `${where}: ILPIP of ${k} must not change`);
    if (c.kind === 'setIlpip' && targets(c, va)) assert.equal(vb.ilpipEnabled, c.ilpip, where);
    if (c.kind === 'setStaticDip' && targets(c, va)) {
      const want =
        c.staticSlot === null ? null : staticAddress(va.vnet, va.subnet as SubnetName, c.staticSlot);
      assert.equal(vb.staticDip, want, `${where}: static DIP of ${k}`);
    } else assert.equal(vb.staticDip, va.staticDip, `${where}: static DIP of ${k}`);
  }
  // No VM appears but the one created.
  for (const vb of b.vms) {
    if (findVm(a, vb.service, vb.name)) continue;
    assert.ok(
      c.kind === 'createVm' && c.service === vb.service && c.vm === vb.name,
      `${where}: new VM ${vmKey(vb)}`,
    );
    assert.equal(vb.state, c.start ? 'running' : 'deallocated', `${where}: state of new VM`);
    assert.equal(vb.ilpipEnabled, c.ilpip, where);
    const st = c.staticSlot === null ? null : staticAddress(vb.vnet, c.subnet, c.staticSlot);
    assert.equal(vb.staticDip, st, where);
  }
  if (c.kind === 'maintainHost' || c.kind === 'maintainRack') {
    for (const v of b.vms)
      assert.ok(!maintained(c, v), `${where}: VM ${vmKey(v)} is still under maintenance`);
  }

  // Services: R1–R3. A VIP changes only to or from null, or under a reserved-IP operation on it.
  for (const sa of a.services) {
    const sb = findService(b, sa.name);
    if (sb === undefined) {
      assert.ok(
        c.kind === 'deleteService' && c.service === sa.name,
        `${where}: service ${sa.name} disappeared`,
      );
      continue;
    }
    const idleBefore = !hasAllocatedVm(a, sa.name) && sa.reservedIp === null;
    const idleAfter = !hasAllocatedVm(b, sb.name) && sb.reservedIp === null;
    const ripOp =
      (c.kind === 'associateRip' && c.service === sa.name) ||
      (c.kind === 'disassociateRip' && findRip(a, c.name)?.service === sa.name) ||
      (c.kind === 'reserveVip' && c.service === sa.name);
    if (sb.vip !== sa.vip) {
      assert.ok(
        idleBefore || idleAfter || ripOp,
        `${where}: VIP of ${sa.name} changed ${sa.vip} -> ${sb.vip} (R2)`,
      );
    }
    if (!ripOp) assert.equal(sb.reservedIp, sa.reservedIp, `${where}: reserved IP of ${sa.name}`);
    if (c.kind === 'reserveVip' && c.service === sa.name) {
      assert.equal(sb.vip, sa.vip, `${where}: reserving a VIP in place keeps the address`);
      assert.equal(findRip(b, c.name)?.address, sa.vip, where);
    }
    if (c.kind === 'associateRip' && c.service === sa.name) {
      assert.equal(sb.vip, findRip(a, c.name)!.address, `${where}: R1 reserved IP becomes the VIP at once`);
    }
  }
  for (const sb of b.services) {
    if (findService(a, sb.name)) continue;
    assert.ok(c.kind === 'createService' && c.service === sb.name, `${where}: new service ${sb.name}`);
    const rip = c.reservedIp === null ? undefined : findRip(a, c.reservedIp);
    assert.equal(sb.vip, rip?.address ?? null, `${where}: R1 a new service's VIP`);
  }

  // Reserved IPs keep their address for life.
  for (const ra of a.rips) {
    const rb = findRip(b, ra.name);
    if (rb === undefined) {
      assert.ok(c.kind === 'deleteRip' && c.name === ra.name, `${where}: reserved IP ${ra.name} disappeared`);
      continue;
    }
    assert.equal(rb.address, ra.address, `${where}: address of reserved IP ${ra.name}`);
    if (c.kind === 'deleteService' && ra.service === c.service) assert.equal(rb.service, null, where);
  }
  for (const rb of b.rips) {
    if (findRip(a, rb.name)) continue;
    assert.ok(
      (c.kind === 'createRip' || c.kind === 'reserveVip') && c.name === rb.name,
      `${where}: new ${rb.name}`,
    );
  }
}

/** Runs one step: its outcome is the predicted one; a refusal changes nothing; invariants hold. */
async function step(
  t: DialectCloud,
  c: Cmd,
  before: Snapshot,
  where: string,
): Promise<{ after: Snapshot; outcome: string }> {
  const want = expected(before, c);
  let error: unknown;
  try {
    await run(t, c);
  } catch (e) {
    if (!isVipdipError(e)) throw e;
    error = e;
  }
  const after = await snapshot(t);
  if (error === undefined) {
    assert.ok(want.ok, `${where}: succeeded, but ${want.ok ? '' : want.code} was expected`);
    checkStep(c, before, after, where);
  } else {
    assert.ok(isVipdipError(error));
    assert.ok(!want.ok, `${where}: refused with ${error.message}, but success was expected`);
    assert.equal(error.code, want.code, `${where}: ${error.message}`);
    for (const m of want.mentions)
      assert.ok(error.message.includes(m), `${where}: ${error.message} names ${m}`);
    assert.equal(after.dump, before.dump, `${where}: a refused operation changed the store`);
    assert.equal(counts(after), counts(before), `${where}: a refused operation changed the indexes`);
  }
  checkViews(after, where);
  await checkStore(t, where);
  return { after, outcome: isVipdipError(error) ? error.code : 'ok' };
}

/** The dump holds the domain's tables only: two clouds opened at different moments differ nowhere else. */
const domainDump = (t: DialectCloud): Promise<string> => dumpStore(t.store);

/**
 * Shrinking replays whole sequences, one to two seconds each: a failure is reported with the
 * smallest counterexample found within the time limit rather than after many minutes.
 */
const RUN_OPTIONS = { includeErrorInReport: true, interruptAfterTimeLimit: 90_000 };

/**
 * Runs a command sequence on a fresh cloud: with `check`, every step is checked as above. Returns the
 * final state and each step's outcome (`ok` or the error code).
 */
async function runSequence(
  dialect: Dialect,
  seed: number,
  cmds: readonly Cmd[],
  check: boolean,
): Promise<{ dump: string; outcomes: string[] }> {
  const t = await makeDialectCloud(dialect, {
    seed,
    pools: [POOL],
    ...(dialect === 'postgres' ? { cluster: await postgres() } : {}),
  });
  const outcomes: string[] = [];
  try {
    await setUp(t);
    let s = await snapshot(t);
    if (check) {
      checkViews(s, 'set-up');
      await checkStore(t, 'set-up');
    }
    for (const [i, generated] of cmds.entries()) {
      const c = resolve(generated, s.vms, s.services);
      if (check) {
        const r = await step(t, c, s, `step ${i} ${JSON.stringify(c)}`);
        s = r.after;
        outcomes.push(r.outcome);
      } else {
        try {
          await run(t, c);
          outcomes.push('ok');
        } catch (e) {
          if (!isVipdipError(e)) throw e;
          outcomes.push(e.code);
        }
        s = { ...s, vms: await t.cloud.listVms(), services: await t.cloud.listServices() };
      }
    }
    return { dump: await domainDump(t), outcomes };
  } finally {
    await t.close();
  }
}

const newVm = (
  service: string,
  vm: string,
  subnet: SubnetName,
  o: { start?: boolean; ilpip?: boolean; staticSlot?: number } = {},
): Cmd => ({
  kind: 'createVm',
  service,
  vm,
  subnet,
  staticSlot: o.staticSlot ?? null,
  ilpip: o.ilpip ?? false,
  start: o.start ?? true,
});
const vmOp = (service: string, vm: string, op: VmOperation): Cmd => ({
  kind: 'vmOp',
  service,
  vm,
  pick: null,
  op,
});

/** A scripted walk through exhaustion, static-DIP collisions and reserved IPs, with its outcomes. */
const SCENARIO: readonly [Cmd, string][] = [
  [newVm('alpha', 'a', 'small', { ilpip: true }), 'ok'], // public: alpha VIP, a's ILPIP
  [newVm('alpha', 'b', 'small'), 'ok'],
  [newVm('alpha', 'c', 'small', { start: false }), 'ok'],
  [newVm('beta', 'a', 'small'), 'ok'], // the third and last usable address of net-redraw/small
  [vmOp('alpha', 'c', 'start'), 'POOL_EXHAUSTED'], // the subnet is full
  [newVm('alpha', 'd', 'small'), 'POOL_EXHAUSTED'],
  [newVm('beta', 'b', 'mid', { ilpip: true }), 'ok'], // public: beta VIP, b's ILPIP (4 of 6)
  [{ kind: 'createRip', name: 'r1' }, 'ok'],
  [{ kind: 'createRip', name: 'r2' }, 'ok'], // the public pool is full
  [newVm('gamma', 'a', 'small'), 'POOL_EXHAUSTED'], // no VIP to draw
  [newVm('gamma', 'a', 'small', { start: false }), 'ok'],
  [vmOp('gamma', 'a', 'start'), 'POOL_EXHAUSTED'],
  [{ kind: 'associateRip', name: 'r1', service: 'gamma' }, 'ok'], // gamma's VIP at once (R1)
  [vmOp('gamma', 'a', 'start'), 'ok'], // sequential: 127.17.0.4
  [newVm('gamma', 'b', 'small', { staticSlot: 0 }), 'ADDRESS_TAKEN'],
  [{ kind: 'disassociateRip', name: 'r1' }, 'POOL_EXHAUSTED'], // gamma would need a fresh VIP
  [{ kind: 'deleteRip', name: 'r1' }, 'IN_USE'],
  [{ kind: 'associateRip', name: 'r1', service: 'alpha' }, 'IN_USE'],
  [{ kind: 'associateRip', name: 'r2', service: 'gamma' }, 'CONFLICT'],
  [{ kind: 'deleteRip', name: 'r2' }, 'ok'],
  [{ kind: 'reserveVip', service: 'alpha', name: 'r2' }, 'ok'], // alpha's VIP becomes r2 in place
  [{ kind: 'reserveVip', service: 'alpha', name: 'r1' }, 'ALREADY_EXISTS'],
  [vmOp('alpha', 'a', 'stop'), 'ok'],
  [vmOp('alpha', 'a', 'restart'), 'INVALID_TRANSITION'],
  [vmOp('alpha', 'a', 'redeploy'), 'ok'],
  [vmOp('alpha', 'a', 'start'), 'ok'],
  [{ kind: 'maintainRack', rack: 'rack1' }, 'ok'],
  [{ kind: 'maintainHost', host: 'rack2-host1' }, 'ok'],
  [{ kind: 'setStaticDip', service: 'alpha', vm: 'a', pick: null, staticSlot: 1 }, 'INVALID_TRANSITION'],
  [{ kind: 'setIlpip', service: 'alpha', vm: 'b', pick: null, ilpip: true }, 'ok'], // the pool is full again
  [{ kind: 'createRip', name: 'r1' }, 'ALREADY_EXISTS'],
  [vmOp('beta', 'b', 'deallocate'), 'ok'], // b's ILPIP goes back
  [{ kind: 'createService', service: 'beta', reservedIp: null }, 'ALREADY_EXISTS'],
  [{ kind: 'deleteService', service: 'alpha' }, 'ok'], // r2 survives, unassociated
  [{ kind: 'createService', service: 'alpha', reservedIp: 'r2' }, 'ok'],
  [{ kind: 'disassociateRip', name: 'r1' }, 'ok'], // gamma draws a fresh VIP
  [vmOp('gamma', 'a', 'deallocate'), 'ok'], // and gives it back (R3)
  [vmOp('gamma', 'a', 'deallocate'), 'INVALID_TRANSITION'],
  [vmOp('gamma', 'z', 'delete'), 'NOT_FOUND'],
  [vmOp('beta', 'a', 'delete'), 'ok'],
  [{ kind: 'deleteRip', name: 'r1' }, 'ok'],
];

const commandsArb = fc.array(cmdArb, { minLength: 1, maxLength: 60, size: 'max' });
const seedArb = fc.integer({ min: 0, max: 0x7fffffff });

const postgres = usePostgres();
/** PostgreSQL costs a database and a network round trip per statement: fewer runs there. */
const RUNS: Record<Dialect, { checked: number; replayed: number }> = {
  sqlite: { checked: 35, replayed: 8 },
  postgres: { checked: 10, replayed: 3 },
};

for (const dialect of DIALECTS) {
  describe(`lifecycle under random operation sequences (${dialect})`, () => {
    test('every step keeps I1–I6, has the predicted outcome, and changes addresses only as R1–R8 allow', async () => {
      await fc.assert(
        fc.asyncProperty(seedArb, commandsArb, async (seed, cmds) => {
          await runSequence(dialect, seed, cmds, true);
        }),
        { ...RUN_OPTIONS, numRuns: RUNS[dialect].checked },
      );
    });

    test('a scripted walk through subnet and pool exhaustion and reserved IPs has the outcomes the rules predict', async () => {
      const { outcomes } = await runSequence(
        dialect,
        1,
        SCENARIO.map(([c]) => c),
        true,
      );
      assert.deepEqual(
        outcomes.map((o, i) => `${i} ${o}`),
        SCENARIO.map(([, o], i) => `${i} ${o}`),
      );
    });

    test('the same seed and the same operations give the same final state', async () => {
      await fc.assert(
        fc.asyncProperty(seedArb, commandsArb, async (seed, cmds) => {
          const first = await runSequence(dialect, seed, cmds, false);
          const second = await runSequence(dialect, seed, cmds, false);
          assert.deepEqual(second.outcomes, first.outcomes);
          assert.equal(second.dump, first.dump);
        }),
        { ...RUN_OPTIONS, numRuns: RUNS[dialect].replayed },
      );
    });
  });
}
