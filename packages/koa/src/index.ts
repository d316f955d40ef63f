// The Koa plugin's public API. Stores with dependencies have their own entry points (`/sqlite`, `/redis`) so this one
// never loads node:sqlite or ioredis.
export { DEFAULTS, MAX_TASK_TIMEOUT_SECONDS } from './defaults.ts';
export type { TaskSubmission } from './delivery/DeliveryTracker.ts';
export type { ForwarderEvent, ForwarderOptions } from './delivery/Forwarder.ts';
export { MemoryTaskStore } from './delivery/stores/MemoryTaskStore.ts';
export {
  type AttachResult,
  type CallbackResult,
  type CallbackTransition,
  FORWARD_EVENTS,
  type ForwardEvent,
  type ForwardOutbox,
  type ForwardRecord,
  type NewTask,
  type RegisterResult,
  type ReplayFilter,
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
export { CallbackMonitor, type CallbackMonitorOptions, METER_NAME } from './plugin/CallbackMonitor.ts';
export type { OnError, OnResult, PrereadBody } from './plugin/callbackHandler.ts';
export type { KoaContextLike, KoaMiddleware } from './plugin/koaTypes.ts';
export { type CallbackInput, type ParsedCallback, type ParseResult, parseCallback } from './plugin/parseCallback.ts';
