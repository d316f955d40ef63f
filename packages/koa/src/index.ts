export {
  DeliveryTracker,
  type DeliveryTrackerOptions,
  MAX_TASK_TIMEOUT_SECONDS,
  type TaskSubmission,
} from './delivery/DeliveryTracker.ts';
export { MemoryTaskStore } from './delivery/stores/MemoryTaskStore.ts';
export {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  type NewTask,
  type RegisterResult,
  type ResultDetails,
  StoreUnavailableError,
  TASK_STATES,
  type TaskCounts,
  type TaskRecord,
  type TaskState,
  type TaskStore,
} from './delivery/TaskStore.ts';
export { TASK_ID, TASK_ID_RULE } from './delivery/taskId.ts';
export type { HealthReport, HealthStatus } from './health/healthReport.ts';
export * from './metrics/contract.ts';
export { type GaugeSources, ReceiverMetrics } from './metrics/instruments.ts';
export { CallbackMonitor, type CallbackMonitorOptions, METER_NAME } from './plugin/CallbackMonitor.ts';
export type { OnError, OnResult, PrereadBody } from './plugin/callbackHandler.ts';
export { type CallbackInput, type ParsedCallback, type ParseResult, parseCallback } from './plugin/parseCallback.ts';
