/**
 * What an agent tells the control plane: the health of the backends it balances and the status and
 * last output of the workloads it runs. The shapes are the API's (core/api-shapes.ts: the report
 * route validates them, and the health and logs routes show them), so they change only compatibly.
 */
export type {
  AgentReport,
  BackendReport,
  BackendState,
  HealthChange,
  LogLine,
  WorkloadReport,
} from '../core/api-shapes.ts';

/** Workloads keep this many of their last output lines. */
export const LOG_LINES_KEPT = 200;
/** A longer line is cut (a workload printing a megabyte without a newline must not grow reports). */
export const LOG_LINE_MAX_CHARS = 2000;
/** And at most this many bytes of text: 200 lines of 2000 characters would be 400 KB per workload. */
export const LOG_BYTES_KEPT = 64 * 1024;
