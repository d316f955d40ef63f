import { MAX_TASK_TIMEOUT_SECONDS } from '../defaults.ts';
import { FORWARD_EVENTS } from '../delivery/TaskStore.ts';

/**
 * Checks the CallbackMonitor options an app passes, so a typo fails at construction with the option's name instead of
 * surfacing as a wrong answer to a solver hours later. Only shapes and ranges: what each option means is documented
 * on `CallbackMonitorOptions`.
 */

type Check = (value: unknown) => string | undefined;

const WHSEC = /^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A Standard Webhooks signing secret: `whsec_` and the base64 of 24 to 64 bytes. */
export function isSigningSecret(value: unknown): value is string {
  if (typeof value !== 'string' || !WHSEC.test(value)) return false;
  const bytes = Buffer.from(value.slice('whsec_'.length), 'base64').length;
  return bytes >= 24 && bytes <= 64;
}

const integer =
  (min: number, max = Number.MAX_SAFE_INTEGER): Check =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? undefined
      : `must be an integer from ${min} to ${max}`;

const fn: Check = (v) => (typeof v === 'function' ? undefined : 'must be a function');
const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'must be true or false');
const path: Check = (v) =>
  typeof v === 'string' && /^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(v) && !v.includes('//')
    ? undefined
    : 'must be a path that starts with "/" (like "/callback")';
const pathOrNull: Check = (v) => (v === null ? undefined : path(v) && `${path(v)}, or null to leave it out`);
const secret: Check = (v) =>
  typeof v === 'string' && /^[A-Za-z0-9._~-]{1,256}$/.test(v)
    ? undefined
    : 'must be 1 to 256 characters of A-Z a-z 0-9 . _ ~ - (it becomes a path segment)';
const hasMethods =
  (...names: string[]): Check =>
  (v) =>
    typeof v === 'object' && v !== null && names.every((n) => typeof (v as Record<string, unknown>)[n] === 'function')
      ? undefined
      : `must be an object with ${names.map((n) => `${n}()`).join(', ')}`;

const CHECKS: Record<string, Check> = {
  store: hasMethods('register', 'recordCallback', 'get', 'ping'),
  meter: hasMethods('createHistogram', 'createObservableCounter', 'createObservableGauge'),
  meterProvider: hasMethods('getMeter'),
  metrics: boolean,
  prefix: path,
  secret,
  deliveryTimeoutSeconds: integer(1, MAX_TASK_TIMEOUT_SECONDS),
  sweepIntervalMs: integer(10, 3_600_000),
  retentionSeconds: integer(60),
  maxBodyBytes: integer(1024, 64 * 1024 * 1024),
  maxQueryBytes: integer(256, 1024 * 1024),
  healthPath: pathOrNull,
  healthzPath: pathOrNull,
  onResult: fn,
  onError: fn,
  now: fn,
};

const FORWARD_CHECKS: Record<string, Check> = {
  url: (v) => {
    if (typeof v !== 'string' || !URL.canParse(v)) return 'must be an absolute http(s) URL';
    return /^https?:$/.test(new URL(v).protocol) ? undefined : 'must be an http: or https: URL';
  },
  secret: (v) => (isSigningSecret(v) ? undefined : 'must be whsec_ followed by the base64 of 24-64 random bytes'),
  events: (v) =>
    Array.isArray(v) && v.length > 0 && v.every((e) => (FORWARD_EVENTS as readonly unknown[]).includes(e))
      ? undefined
      : `must be a non-empty list of ${FORWARD_EVENTS.join(', ')}`,
  timeoutMs: integer(1),
  maxAgeMs: integer(1),
  concurrency: integer(1, 1024),
  retryMinMs: integer(1),
  retryMaxMs: integer(1),
  pollIntervalMs: integer(1),
  statsIntervalMs: integer(1),
  worker: boolean,
  pace: (v) => {
    if (typeof v !== 'object' || v === null) return 'must be an object';
    for (const [name, value] of Object.entries(v)) {
      if (value === undefined) continue;
      const check = PACE_CHECKS[name];
      if (!check) return `has no field "${name}" (known: ${Object.keys(PACE_CHECKS).join(', ')})`;
      const problem = check(value);
      if (problem) return `field "${name}" ${problem}`;
    }
    return undefined;
  },
  onEvent: fn,
  now: fn,
  random: fn,
};

const PACE_CHECKS: Record<string, Check> = {
  busyAt: (v) => (typeof v === 'number' && v > 0 && v <= 1 ? undefined : 'must be a number above 0, at most 1'),
  windowMs: integer(1, 60_000),
  calmWindows: integer(1, 1000),
  trickleMs: integer(1, 3_600_000),
  trickleSize: integer(1, 1024),
  utilization: fn,
};

function checkAll(given: object, checks: Record<string, Check>, prefix = ''): void {
  for (const [name, value] of Object.entries(given)) {
    if (value === undefined) continue;
    const check = checks[name];
    if (!check) {
      const known = Object.keys(checks).map((k) => prefix + k);
      throw new TypeError(`CallbackMonitor: unknown option "${prefix}${name}" (known: ${known.join(', ')})`);
    }
    const problem = check(value);
    if (problem) throw new TypeError(`CallbackMonitor: option "${prefix}${name}" ${problem}`);
  }
}

/** Throws a TypeError naming the first option that is unknown or out of shape; returns quietly otherwise. */
export function validateOptions(options: unknown): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null)
    throw new TypeError('CallbackMonitor: options must be an object');
  const { forward, ...rest } = options as Record<string, unknown>;
  checkAll(rest, CHECKS);
  if (rest.meter !== undefined && rest.meterProvider !== undefined) {
    throw new TypeError('CallbackMonitor: give option "meter" or option "meterProvider", not both');
  }
  if (forward === undefined) return;
  if (typeof forward !== 'object' || forward === null) {
    throw new TypeError('CallbackMonitor: option "forward" must be an object with url and secret');
  }
  for (const required of ['url', 'secret']) {
    if ((forward as Record<string, unknown>)[required] === undefined) {
      throw new TypeError(`CallbackMonitor: option "forward.${required}" is required`);
    }
  }
  checkAll(forward, FORWARD_CHECKS, 'forward.');
  const { retryMinMs, retryMaxMs } = forward as { retryMinMs?: number; retryMaxMs?: number };
  if (retryMinMs !== undefined && retryMaxMs !== undefined && retryMinMs > retryMaxMs) {
    throw new TypeError('CallbackMonitor: option "forward.retryMinMs" must not exceed "forward.retryMaxMs"');
  }
}
