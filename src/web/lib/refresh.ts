/**
 * What an event touches: the cached API paths to fetch again when it arrives. Each event names its
 * resource and what changed, so a page refreshes only what the change can have altered (a DIP
 * change refetches the VM lists, the subnet counts and the service's health; not the pools).
 */
import type { Event as ApiEvent, HealthChange } from '../../core/api-shapes.ts';
// The event catalog is pure (no Node): the dashboard's bundle takes it as it is.
import { isEventType, parseResource } from '../../lifecycle/events.ts';
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
  const res = parseResource(e.resource);
  // A type outside the catalog matches no case below: it refreshes everything, like any unknown.
  const type = isEventType(e.type) ? e.type : undefined;
  const exact: string[] = [];
  const prefix: string[] = [];
  const sub = e.subscription;

  switch (res?.kind) {
    case 'vm': {
      const { service, vm } = res;
      exact.push(paths.vms, paths.serviceVms(service), paths.vm(service, vm), paths.health(service));
      switch (type) {
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
    case 'service': {
      const { service } = res;
      exact.push(paths.services, paths.service(service));
      if (type === 'service.vip') exact.push(paths.pools, paths.health(service));
      else if (type === 'service.deleted') prefix.push(`${paths.service(service)}/`);
      else if (type !== 'service.created') return EVERYTHING;
      return { exact, prefix };
    }
    case 'reserved-ip': {
      const { subscription: owner, name } = res;
      exact.push(paths.reservedIps, paths.subscriptionReservedIps(owner), paths.reservedIp(owner, name));
      if (type === 'reserved-ip.address') exact.push(paths.pools);
      else {
        // Association changes the service's reservedIp (and its VIP, in a service.vip event of its own).
        exact.push(paths.services);
        for (const s of [str(e.old, 'service'), str(e.new, 'service')])
          if (s !== undefined) exact.push(paths.service(s));
      }
      return { exact, prefix };
    }
    case 'vnet':
      return { exact: [paths.vnets], prefix: [paths.subscriptionVnets(res.subscription)] };
    case 'pool':
      return { exact: [paths.pools], prefix: [] };
    case 'host':
    case 'rack':
      return { exact: [paths.hosts], prefix: [] };
    case 'subscription':
      if (type === 'subscription.created') return { exact: [paths.subscriptions], prefix: [] };
      return EVERYTHING;
    default:
      // An event this dashboard does not know: refetch everything rather than show something stale.
      return EVERYTHING;
  }
}

/** A backend's health changed: only its service's health. */
export function refreshForHealth(h: HealthChange): Refresh {
  return { exact: [paths.health(h.service)], prefix: [] };
}
