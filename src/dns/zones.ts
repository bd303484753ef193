/**
 * The DNS zones computed from the control plane's state: pure, no sockets. A table is an immutable
 * snapshot; the server builds a new one after every committed change and answers every query from
 * whichever snapshot is current (control path apart from the hot path).
 *
 * - public zone: `SERVICE.<public>` A → the service's VIP; `VM.SERVICE.<public>` A → the VM's
 *   instance-level public IP, for a VM that has one enabled;
 * - internal zone: `VM.SERVICE.<internal>` A → the VM's current DIP;
 * - a name whose address is not held right now (a service without a VIP, a deallocated VM) still
 *   exists and answers NODATA, never a stale address;
 * - every ancestor of an existing name inside its zone exists too (an empty non-terminal answers
 *   NODATA, not NXDOMAIN: RFC 8020);
 * - each zone has an SOA and an NS record at its apex, and a serial that increases whenever the
 *   zone's content changes;
 * - a query has a scope (scope.ts): a VM's sees the internal names of its own VNet's VMs only, the
 *   internet's none; a name hidden from a scope is NXDOMAIN exactly as a name that does not exist.
 *   The names each VNet sees are indexed when the table is built, so a lookup stays two map reads.
 */
import type { SoaData } from 'dns-packet';
import { VipdipError } from '../core/errors.ts';
import type { ServiceView, VmView } from '../lifecycle/index.ts';
import { SCOPE_ALL, type DnsScope } from './scope.ts';

export { DEFAULT_INTERNAL_ZONE, DEFAULT_PUBLIC_ZONE, serviceFqdn, vmFqdns } from '../lifecycle/index.ts';
/** A records live this long in caches: an address never stays stale for longer (issue 5). */
export const DEFAULT_TTL_SECONDS = 5;
/** SOA timers for secondaries, which vipdip does not have; conventional values (RFC 1912 §2.2). */
const SOA_REFRESH_S = 3600;
const SOA_RETRY_S = 600;
const SOA_EXPIRE_S = 604_800;

export interface ZoneConfig {
  publicZone: string;
  internalZone: string;
  ttlSeconds: number;
  /**
   * The address of the name server host `ns.<internalZone>` (the SOA MNAME and the NS target of
   * both zones), or null to publish the name without an address (a server bound to a wildcard).
   */
  nsAddress: string | null;
}

/** What the zones are built from: the smallest part of the lifecycle's views DNS needs. */
export type ServiceInput = Pick<ServiceView, 'name' | 'vip'>;
export type VmInput = Pick<
  VmView,
  'subscription' | 'vnet' | 'service' | 'name' | 'dip' | 'ilpip' | 'ilpipEnabled'
>;

export interface Zone {
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly serial: number;
  readonly soa: Readonly<SoaData>;
  /** The NS target of the zone. */
  readonly ns: string;
  /** The zone's content in a canonical form: a different fingerprint is a change of the zone. */
  readonly fingerprint: string;
}

/** One name that exists. `a` is null when it holds no address right now (NODATA). */
export interface NameRecord {
  readonly zone: Zone;
  readonly a: string | null;
  readonly apex: boolean;
}

export interface ZoneTable {
  readonly zones: readonly Zone[];
  /** Every existing name, lower-cased, without a trailing dot. */
  readonly names: ReadonlyMap<string, NameRecord>;
  /**
   * The internal-zone names below the apex that a VNet (`subscription/vnet`) sees: its VMs' names
   * and their ancestors. The apex and the name server host are everyone's.
   */
  readonly vnetNames: ReadonlyMap<string, ReadonlySet<string>>;
  /** The internal zone's name: the one zone whose names depend on who asks. */
  readonly internalZone: string;
  readonly ttlSeconds: number;
}

/** The outcome of looking a (lower-cased) name up in a table. */
export type Lookup =
  | { readonly kind: 'outside' }
  | { readonly kind: 'nxdomain'; readonly zone: Zone }
  | { readonly kind: 'found'; readonly record: NameRecord };

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Lower case and no trailing dot; refuses what is not a DNS name of letters, digits and hyphens. */
export function normalizeZoneName(what: string, text: string): string {
  const name = text.toLowerCase().replace(/\.$/, '');
  const labels = name.split('.');
  if (name.length > 200 || labels.length < 1 || !labels.every((l) => LABEL.test(l))) {
    throw new VipdipError('INVALID_ARGUMENT', `${what} ${JSON.stringify(text)} is not a valid DNS zone name`);
  }
  return name;
}

const within = (name: string, zone: string) => name === zone || name.endsWith(`.${zone}`);

/** Checks and normalizes a zone configuration: two distinct zones, neither inside the other. */
export function checkZoneConfig(c: ZoneConfig): ZoneConfig {
  const publicZone = normalizeZoneName('public zone', c.publicZone);
  const internalZone = normalizeZoneName('internal zone', c.internalZone);
  if (within(publicZone, internalZone) || within(internalZone, publicZone)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `the public zone ${publicZone} and the internal zone ${internalZone} must be distinct, and neither inside the other`,
    );
  }
  if (!Number.isInteger(c.ttlSeconds) || c.ttlSeconds < 0 || c.ttlSeconds > 86_400) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `DNS TTL ${c.ttlSeconds} must be a whole number of seconds, 0 to 86400`,
    );
  }
  return { ...c, publicZone, internalZone };
}

/** The next serial: one more than before, and at least the Unix time (RFC 1912's convention). */
function nextSerial(previous: number | undefined, nowMs: number): number {
  const clock = Math.floor(nowMs / 1000) >>> 0;
  return previous === undefined ? clock : Math.max(previous + 1, clock) >>> 0;
}

/**
 * Builds the table from the current services and VMs. `previous` carries the serials forward: a
 * zone whose content changed gets a larger serial, an unchanged zone keeps its own.
 */
export function buildZoneTable(
  input: { services: readonly ServiceInput[]; vms: readonly VmInput[] },
  config: ZoneConfig,
  previous: ZoneTable | undefined,
  nowMs: number,
): ZoneTable {
  const c = checkZoneConfig(config);
  const nsHost = `ns.${c.internalZone}`;
  // name → address, per zone, before the zones (and their serials) exist.
  const content = new Map<string, Map<string, string | null>>([
    [c.publicZone, new Map()],
    [c.internalZone, new Map()],
  ]);
  const vnetNames = new Map<string, Set<string>>();
  const add = (zone: string, name: string, a: string | null, seenBy?: Set<string>) => {
    const names = content.get(zone)!;
    const full = `${name}.${zone}`.toLowerCase();
    seenBy?.add(full);
    // An address wins over an empty name that got there first (the name server host, say).
    if (a !== null || !names.has(full)) names.set(full, a);
    // Ancestors up to the apex exist as empty non-terminals.
    for (
      let i = full.indexOf('.');
      i >= 0 && full.length - i - 1 > zone.length;
      i = full.indexOf('.', i + 1)
    ) {
      const parent = full.slice(i + 1);
      if (!names.has(parent)) names.set(parent, null);
      seenBy?.add(parent);
    }
  };
  for (const s of input.services) add(c.publicZone, s.name, s.vip);
  for (const vm of input.vms) {
    const vnet = `${vm.subscription}/${vm.vnet}`;
    let seen = vnetNames.get(vnet);
    if (seen === undefined) vnetNames.set(vnet, (seen = new Set()));
    add(c.internalZone, `${vm.name}.${vm.service}`, vm.dip, seen);
    if (vm.ilpipEnabled) add(c.publicZone, `${vm.name}.${vm.service}`, vm.ilpip);
  }
  add(c.internalZone, 'ns', c.nsAddress);

  const zones: Zone[] = [];
  const names = new Map<string, NameRecord>();
  for (const [zoneName, zoneNames] of content) {
    const fingerprint = [...zoneNames]
      .map(([n, a]) => `${n} ${a ?? '-'}`)
      .sort()
      .join('\n');
    const before = previous?.zones.find((z) => z.name === zoneName);
    const serial =
      before !== undefined && before.fingerprint === fingerprint && previous?.ttlSeconds === c.ttlSeconds
        ? before.serial
        : nextSerial(before?.serial, nowMs);
    const zone: Zone = {
      name: zoneName,
      serial,
      ns: nsHost,
      fingerprint,
      soa: Object.freeze({
        mname: nsHost,
        rname: `hostmaster.${c.internalZone}`,
        serial,
        refresh: SOA_REFRESH_S,
        retry: SOA_RETRY_S,
        expire: SOA_EXPIRE_S,
        // The negative-caching TTL (RFC 2308): an NXDOMAIN is not cached longer than an address.
        minimum: c.ttlSeconds,
      }),
    };
    zones.push(Object.freeze(zone));
    names.set(zoneName, Object.freeze({ zone, a: null, apex: true }));
    for (const [n, a] of zoneNames) names.set(n, Object.freeze({ zone, a, apex: false }));
  }
  return Object.freeze({
    zones: Object.freeze(zones),
    names,
    vnetNames,
    internalZone: c.internalZone,
    ttlSeconds: c.ttlSeconds,
  });
}

/** Whether a scope sees an existing name: the public zone, each apex and the name server host are everyone's. */
function visible(table: ZoneTable, name: string, record: NameRecord, scope: DnsScope): boolean {
  if (scope.kind === 'all' || record.apex || record.zone.name !== table.internalZone) return true;
  if (name === record.zone.ns) return true;
  return scope.kind === 'vnet' && table.vnetNames.get(scope.vnet)?.has(name) === true;
}

/**
 * Looks a lower-cased name (no trailing dot) up for a scope: outside every zone, unknown in a zone
 * (or hidden from the scope: the same answer), or found.
 */
export function lookup(table: ZoneTable, name: string, scope: DnsScope = SCOPE_ALL): Lookup {
  const record = table.names.get(name);
  if (record !== undefined && visible(table, name, record, scope)) return { kind: 'found', record };
  for (const zone of table.zones) if (within(name, zone.name)) return { kind: 'nxdomain', zone };
  return { kind: 'outside' };
}
