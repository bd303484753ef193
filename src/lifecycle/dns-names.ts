/**
 * The DNS names of services and VMs. They are part of the views (the API, the CLI and the dashboard
 * show them) as much as of the DNS server, so they are computed here, from the zone names alone.
 */
import type { VmView } from './views.ts';

export const DEFAULT_PUBLIC_ZONE = 'cloudapp.vipdip.test';
export const DEFAULT_INTERNAL_ZONE = 'internal.vipdip.test';

export interface DnsZones {
  publicZone: string;
  internalZone: string;
}

/** The public name of a service (A → its VIP). */
export function serviceFqdn(service: string, publicZone = DEFAULT_PUBLIC_ZONE): string {
  return `${service}.${publicZone}`;
}

/**
 * The names of a VM: `internal` (A → its DIP) always; `public` (A → its ILPIP) when it has an
 * instance-level public IP enabled, else null.
 */
export function vmFqdns(
  vm: Pick<VmView, 'service' | 'name' | 'ilpipEnabled'>,
  zones: Partial<DnsZones> = {},
): { internal: string; public: string | null } {
  const label = `${vm.name}.${vm.service}`;
  return {
    internal: `${label}.${zones.internalZone ?? DEFAULT_INTERNAL_ZONE}`,
    public: vm.ilpipEnabled ? `${label}.${zones.publicZone ?? DEFAULT_PUBLIC_ZONE}` : null,
  };
}
