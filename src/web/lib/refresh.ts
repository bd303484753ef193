/**
 * What an event touches: the cached API paths to fetch again when it arrives. Each event names its
 * resource and what changed, so a page refreshes only what the change can have altered (a DIP
 * change refetches the VM lists, the subnet counts and the service's health; not the pools).
 */
import type { Event as ApiEvent, HealthChange } from '../../core/api-shapes.ts';
import { paths } from './paths.ts';

export interface Refresh {
  /** Cache keys to refetch exactly. */
  exact: string[];
  /** Cache keys to refetch when they start with one of these. */
  prefix: string[];
}

const EVERYTHING: Refresh = { exact: [], prefix: ['/v1/'] };

/** Whether a cache key is among those a refresh names. */
export function touches(r: Refresh, key: string): boolean {
  return r.exact.includes(key) || r.prefix.some((p) => key.startsWith(p));
}

/** Several refreshes as one (a burst of events refetches each path once). */
export function mergeRefresh(...rs: Refresh[]): Refresh {
  return {
    exact: [...new Set(rs.flatMap((r) => r.exact))],
    prefix: [...new Set(rs.flatMap((r) => r.prefix))],
  };
}

const str = (o: Record<string, unknown> | null, k: string): string | undefined => {
  const v = o?.[k];
  return typeof v === 'string' ? v : undefined;
};

/** The refresh one event of the log calls for. */
export function refreshFor(e: ApiEvent): Refresh {
  const parts = e.resource.split('/');
  const [kind] = parts;
  const exact: string[] = [];
  const prefix: string[] = [];
  const sub = e.subscription;

  if (kind === 'vm' && parts.length === 3) {
    const [, service, vm] = parts as [string, string, string];
    const vmPath = paths.vm(service, vm);
    exact.push(paths.vms, paths.serviceVms(service), vmPath, paths.health(service));
    switch (e.type) {
      case 'vm.created':
      case 'vm.deleted':
        // The service lists its VMs' names; the hosts count them.
        exact.push(paths.services, paths.service(service), paths.hosts, paths.logs(service, vm));
        break;
      case 'vm.dip':
        exact.push(paths.vnets);
        if (sub !== null) prefix.push(`${paths.subscriptionVnets(sub)}/`);
        break;
      case 'vm.host':
        exact.push(paths.hosts);
        break;
      case 'vm.ilpip':
        exact.push(paths.pools);
        break;
      default:
        // A state change or an update: the workload's logs may follow.
        exact.push(paths.logs(service, vm));
    }
    return { exact, prefix };
  }
  if (kind === 'service' && parts.length === 2) {
    const service = parts[1]!;
    exact.push(paths.services, paths.service(service));
    if (e.type === 'service.vip') exact.push(paths.pools, paths.health(service));
    else if (e.type === 'service.deleted') prefix.push(`${paths.service(service)}/`);
    else if (e.type !== 'service.created') return EVERYTHING;
    return { exact, prefix };
  }
  if (kind === 'reserved-ip' && parts.length === 3) {
    const owner = parts[1]!;
    exact.push(paths.reservedIps, paths.subscriptionReservedIps(owner), paths.reservedIp(owner, parts[2]!));
    if (e.type === 'reserved-ip.address') exact.push(paths.pools);
    else {
      // Association changes the service's reservedIp (and its VIP, in a service.vip event of its own).
      exact.push(paths.services);
      for (const s of [str(e.old, 'service'), str(e.new, 'service')])
        if (s !== undefined) exact.push(paths.service(s));
    }
    return { exact, prefix };
  }
  if (kind === 'vnet' && parts.length >= 3) {
    return { exact: [paths.vnets], prefix: [paths.subscriptionVnets(parts[1]!)] };
  }
  if (kind === 'pool') return { exact: [paths.pools], prefix: [] };
  if (kind === 'host' || kind === 'rack') return { exact: [paths.hosts], prefix: [] };
  if (kind === 'subscription') {
    if (e.type === 'subscription.created') return { exact: [paths.subscriptions], prefix: [] };
    return EVERYTHING;
  }
  // An event this dashboard does not know: refetch everything rather than show something stale.
  return EVERYTHING;
}

/** A backend's health changed: only its service's health. */
export function refreshForHealth(h: HealthChange): Refresh {
  return { exact: [paths.health(h.service)], prefix: [] };
}
