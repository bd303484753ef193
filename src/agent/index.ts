export { Agent, REPORT_BATCH_MS, type AgentOptions } from './agent.ts';
export {
  BUILTIN_WORKLOADS,
  desiredState,
  envName,
  healthKey,
  isBuiltin,
  resolveWorkload,
  sharedHostCommand,
  workloadCommand,
  workloadEnv,
  type AgentDesired,
  type AgentScope,
  type BackendInfo,
  type ControlSnapshot,
  type DesiredWorkload,
  type WorkloadLaunch,
  type EndpointTemplate,
} from './desired.ts';
export {
  AGENT_HEARTBEAT_MS,
  REPORT_STALE_MS,
  StatusRegistry,
  type BackendEntry,
  type HealthListener,
  type WorkloadEntry,
} from './registry.ts';
export * from './report.ts';
export { InProcessSource, affectsDataPlane, type ControlSource } from './source.ts';
export { WorkloadSupervisor, STOP_GRACE_MS, type SupervisorOptions } from './workloads.ts';
export { VMS_PER_SHARED_HOST } from './shared-hosts.ts';
export { RemoteSource, type RemoteSourceOptions } from './remote-source.ts';
export {
  DEFAULT_SANDBOX_LIMITS,
  SANDBOX_USER,
  defaultSandboxRoot,
  sandboxLimits,
  type SandboxLimits,
  type SandboxOptions,
} from './sandbox.ts';
