export { DeliveryTracker, type DeliveryTrackerOptions } from './delivery/DeliveryTracker.ts';
export { MemoryTaskStore } from './delivery/stores/MemoryTaskStore.ts';
export {
  type CallbackResult,
  type CallbackTransition,
  StoreUnavailableError,
  TASK_STATES,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from './delivery/TaskStore.ts';
export type { HealthReport, HealthStatus } from './health/healthReport.ts';
export * from './metrics/contract.ts';
export { type GaugeSources, ReceiverMetrics } from './metrics/instruments.ts';
export { CallbackMonitor, type CallbackMonitorOptions, METER_NAME } from './plugin/CallbackMonitor.ts';
export type { OnError, OnResult } from './plugin/callbackHandler.ts';
export { parseCallback } from './plugin/parseCallback.ts';
