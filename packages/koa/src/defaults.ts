/**
 * Every default of the receiver, in one place: the plugin's options, the delivery tracker, the standalone server's
 * configuration and the generated documentation all read them from here.
 */
export const DEFAULTS = Object.freeze({
  /** Path of the callback route family. */
  prefix: '/callback',
  /** Seconds a registered task waits for its callback before it counts as missed. */
  deliveryTimeoutSeconds: 300,
  /** Seconds settled tasks and stored unregistered callbacks are kept after their callback or deadline. */
  retentionSeconds: 7 * 24 * 3600,
  /** Deadline sweeper period, ms. */
  sweepIntervalMs: 1000,
  /** Largest accepted callback body, bytes. */
  maxBodyBytes: 64 * 1024,
  /** Longest accepted query string, bytes. */
  maxQueryBytes: 8 * 1024,
  /** The JSON health report's path. */
  healthPath: '/health/callbacks',
  /** The store-reachability probe's path. */
  healthzPath: '/healthz',
});

/** The longest per-task deadline, seconds: the default retention horizon (7 days). */
export const MAX_TASK_TIMEOUT_SECONDS = DEFAULTS.retentionSeconds;
