/**
 * The API paths the dashboard reads. They are also the keys of its cache, so the event → refresh
 * mapping (refresh.ts) names exactly what the pages fetched.
 */
const seg = encodeURIComponent;

export const paths = {
  whoami: '/v1/whoami',
  subscriptions: '/v1/subscriptions',
  services: '/v1/services',
  vms: '/v1/vms',
  vnets: '/v1/vnets',
  reservedIps: '/v1/reserved-ips',
  pools: '/v1/pools',
  hosts: '/v1/hosts',
  events: '/v1/events',
  stream: '/v1/events/stream',
  service: (service: string) => `/v1/services/${seg(service)}`,
  serviceVms: (service: string) => `/v1/services/${seg(service)}/vms`,
  health: (service: string) => `/v1/services/${seg(service)}/health`,
  vm: (service: string, vm: string) => `/v1/services/${seg(service)}/vms/${seg(vm)}`,
  logs: (service: string, vm: string) => `/v1/services/${seg(service)}/vms/${seg(vm)}/logs`,
  vmOperation: (service: string, vm: string, op: string) =>
    `/v1/services/${seg(service)}/vms/${seg(vm)}/${seg(op)}`,
  subscriptionVnets: (sub: string) => `/v1/subscriptions/${seg(sub)}/vnets`,
  vnet: (sub: string, vnet: string) => `/v1/subscriptions/${seg(sub)}/vnets/${seg(vnet)}`,
  subscriptionReservedIps: (sub: string) => `/v1/subscriptions/${seg(sub)}/reserved-ips`,
  reservedIp: (sub: string, name: string) => `/v1/subscriptions/${seg(sub)}/reserved-ips/${seg(name)}`,
  hostMaintenance: (host: string) => `/v1/hosts/${seg(host)}/maintenance`,
} as const;

/** The event resource names the lifecycle uses (src/lifecycle/cloud.ts). */
export const resources = {
  vm: (service: string, vm: string) => `vm/${service}/${vm}`,
  service: (service: string) => `service/${service}`,
  reservedIp: (sub: string, name: string) => `reserved-ip/${sub}/${name}`,
} as const;
