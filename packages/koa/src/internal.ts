// The standalone server's view of this package: everything public, plus the internals it wires together itself.
// Not part of the public API: names here may change in any release.
export * from './delivery/DeliveryTracker.ts';
export * from './delivery/Forwarder.ts';
export * from './delivery/stores/MemoryTaskStore.ts';
export * from './delivery/stores/RedisTaskStore.ts';
export * from './delivery/stores/SqliteTaskStore.ts';
export * from './delivery/TaskStore.ts';
export * from './delivery/taskId.ts';
export * from './delivery/taskJson.ts';
export * from './health/healthReport.ts';
export * from './index.ts';
export * from './metrics/instruments.ts';
export { type MonitorInternals, monitorInternals } from './plugin/CallbackMonitor.ts';
export * from './plugin/callbackHandler.ts';
export * from './plugin/readBody.ts';
export { secretMatcher } from './plugin/secretPath.ts';
export { isSigningSecret } from './plugin/validateOptions.ts';
