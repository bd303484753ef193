export {
  FLOW_HASH_SEED,
  PROTOCOL_NUMBER,
  flowHash,
  flowKey,
  flowSlot,
  jhash,
  NFT_FLOW_FIELDS,
  murmur3,
  murmur3Text,
  type Flow,
} from './hash.ts';
export {
  MAGLEV_TABLE_LADDER,
  MAGLEV_TABLE_SIZE_DEFAULT,
  buildMaglevTable,
  checkTableSize,
  isPrime,
  maglevPermutation,
  maglevTableSize,
} from './maglev.ts';
export { PickerSnapshot, type Backend, type PickedBackend, type PickerInput } from './picker.ts';
export { compileAcl, type AclCheck } from './acl.ts';
export {
  Admission,
  REFUSAL_NAMES,
  REFUSE_ACL,
  REFUSE_CLIENT_LIMIT,
  REFUSE_ENDPOINT_LIMIT,
  REFUSE_NO_BACKEND,
  ipv4FromSocket,
  type AdmissionCounters,
  type EndpointPolicy,
  type Refusal,
} from './admission.ts';
export {
  HealthMonitor,
  UNKNOWN_RETRY_MS,
  type HealthMonitorOptions,
  type HealthState,
  type HealthStatus,
  type ProbeResult,
  type ProbeSpec,
  type Prober,
} from './health.ts';
export { probe } from './probe.ts';
export {
  PASSIVE_FAILURE_THRESHOLD,
  PASSIVE_HOLD_MS,
  PassiveHealth,
  backendKey,
  type PassiveHealthOptions,
} from './passive.ts';
export {
  PROXY_V2_IPV4_LENGTH,
  PROXY_V2_SIGNATURE,
  parseProxyV2,
  proxyV2Header,
  type ProxyV2Info,
} from './proxy-protocol.ts';
export { ManualTime, scaledTime, type TimeSource, type Timer } from './time.ts';
export {
  CONNECT_BUDGET_MS,
  CONNECT_TIMEOUT_MS,
  CONNECT_TRIES,
  REPLAY_MAX_BYTES,
  SOCKET_HIGH_WATER_MARK_BYTES,
  TcpListener,
  type TcpListenerOptions,
  type TcpListenerUpdate,
} from './tcp-proxy.ts';
export { UdpListener, type UdpListenerOptions, type UdpListenerUpdate } from './udp-proxy.ts';
