export {
  DEFAULT_DNS_HOST,
  DEFAULT_DNS_PORT,
  DEFAULT_MAX_TCP_CLIENTS,
  DEFAULT_MAX_TCP_PER_CLIENT,
  DEFAULT_TCP_IDLE_MS,
  startDnsServer,
  type DnsServer,
  type DnsServerOptions,
  type DnsServerStats,
  type DnsSource,
} from './server.ts';
export {
  DEFAULT_INTERNAL_ZONE,
  DEFAULT_PUBLIC_ZONE,
  DEFAULT_TTL_SECONDS,
  buildZoneTable,
  checkZoneConfig,
  serviceFqdn,
  vmFqdns,
  type ZoneConfig,
  type ZoneTable,
} from './zones.ts';
export {
  SCOPE_INTERNET,
  SCOPE_OPTION_CODE,
  formatScope,
  scopeQuery,
  unscopeReply,
  vnetScope,
  type DnsScope,
} from './scope.ts';
export { TcpConnectionLimiter, type TcpAdmission, type TcpLimits } from './tcp-limits.ts';
