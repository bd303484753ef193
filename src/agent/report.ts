/**
 * What an agent tells the control plane: the health of the backends it balances and the status and
 * last output of the workloads it runs. These are also the shapes of the API's health and logs
 * routes (the dashboard reads them), so they change only compatibly.
 */
import type { ListenerStatus } from '../dataplane/index.ts';

export type BackendState = 'up' | 'down' | 'unknown';
export type WorkloadStatusName = 'none' | 'starting' | 'running' | 'stopped' | 'crashed';

export interface BackendReport {
  subscription: string;
  service: string;
  /** The endpoint's name on this VM. */
  endpoint: string;
  vm: string;
  dip: string | null;
  localPort: number;
  state: BackendState;
  /** ISO time of the last change of `state`, when known. */
  since: string | null;
  detail: string | null;
}

export interface LogLine {
  time: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

export interface WorkloadReport {
  subscription: string;
  service: string;
  vm: string;
  workload: string;
  status: Exclude<WorkloadStatusName, 'none'>;
  pid: number | null;
  restarts: number;
  lines: LogLine[];
}

export interface AgentReport {
  /** The agent's name, unique among the agents of one control plane. */
  agent: string;
  /** The hosts whose VMs it runs, or null for all of them. */
  hosts: string[] | null;
  /** Whether it runs the load balancer (listeners and probes). */
  lb: boolean;
  driver: string;
  backends: BackendReport[];
  workloads: WorkloadReport[];
  listeners: ListenerStatus[];
}

/** The live health message of the event stream (`event: health`, no id: not part of the log). */
export interface HealthEvent {
  service: string;
  endpoint: string;
  vm: string;
  dip: string | null;
  state: BackendState;
  since: string | null;
  detail: string | null;
}

/** Workloads keep this many of their last output lines. */
export const LOG_LINES_KEPT = 200;
/** A longer line is cut (a workload printing a megabyte without a newline must not grow reports). */
export const LOG_LINE_MAX_CHARS = 2000;
/** And at most this many bytes of text: 200 lines of 2000 characters would be 400 KB per workload. */
export const LOG_BYTES_KEPT = 64 * 1024;
