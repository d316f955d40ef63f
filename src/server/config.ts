import { DEFAULTS, MAX_TASK_TIMEOUT_SECONDS } from '@captcha-callback-monitor/koa';
import { z } from 'zod';
import { redactUrlCredentials } from './redact.ts';

const port = (fallback: number) =>
  z.coerce
    .number({ error: 'must be a port number' })
    .int('must be a whole number')
    .min(0, 'must be 0-65535')
    .max(65535, 'must be 0-65535')
    .default(fallback);
const millis = (fallback: number) =>
  z.coerce
    .number({ error: 'must be a number of milliseconds' })
    .int('must be whole milliseconds')
    .min(1, 'must be ≥ 1')
    .default(fallback);
const token = z
  .string()
  .min(16, 'must be at least 16 characters (use a random value, e.g. `openssl rand -hex 16`)')
  .max(256, 'must be at most 256 characters')
  .regex(/^[A-Za-z0-9_~.-]+$/, 'may only contain A-Z a-z 0-9 _ ~ . - (it goes in a URL path)')
  .optional();

/** `whsec_` and the base64 of at least 24 random bytes (Standard Webhooks allows 24-64). */
const WHSEC = /^whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const forwardSecret = z
  .string()
  .regex(WHSEC, 'must be whsec_ followed by base64 (generate one: echo "whsec_$(openssl rand -base64 32)")')
  .refine((v) => {
    const bytes = Buffer.from(v.slice('whsec_'.length), 'base64').length;
    return bytes >= 24 && bytes <= 64;
  }, 'must decode to 24-64 bytes (echo "whsec_$(openssl rand -base64 32)")')
  .optional();
const forwardEvents = z
  .string()
  .regex(/^(delivered|late|missed)(,(delivered|late|missed))*$/, 'must be a comma list of delivered, late, missed')
  .default('delivered,late');
const forwardUrl = z
  .string()
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be an http:// or https:// URL')
  .optional();

/** Variables whose values never appear in an error message or a log. */
const SECRET_VARIABLES = new Set(['CALLBACK_SECRET', 'API_TOKEN', 'FORWARD_SECRET', 'FORWARD_URL']);

/** Every environment variable the server reads, with its default and its rule; README's table mirrors this. */
export const CONFIG_SCHEMA = z.object({
  PORT: port(3000).describe('Public listener port: the callback routes, /health/callbacks, /healthz.'),
  HOST: z.string().min(1).default('0.0.0.0').describe('Public listener address.'),
  MANAGEMENT_PORT: port(9464).describe(
    'Management listener port: /metrics and the /tasks API. Never expose it publicly.',
  ),
  MANAGEMENT_HOST: z
    .string()
    .min(1)
    .default('127.0.0.1')
    .describe(
      'Management listener address. Loopback by default; any other address without API_TOKEN logs a warning at start-up.',
    ),
  STORE_URL: z
    .string()
    .regex(
      /^(memory:|sqlite:.+|redis:\/\/.+|rediss:\/\/.+)$/,
      'must be memory:, sqlite:<path>, sqlite::memory: or redis://host:port/db',
    )
    .default('sqlite:./data/callbacks.db')
    .describe(
      'Task store: sqlite:<file> (default, embedded), sqlite::memory:, memory:, redis://host:port/db (shared).',
    ),
  DELIVERY_TIMEOUT: z.coerce
    .number({ error: 'must be a number of seconds' })
    .min(1, 'must be at least 1 second')
    .max(MAX_TASK_TIMEOUT_SECONDS, `must be at most ${MAX_TASK_TIMEOUT_SECONDS} seconds (7 days)`)
    .default(DEFAULTS.deliveryTimeoutSeconds)
    .describe('Seconds a registered task may wait for its callback before it counts as missed.'),
  RETENTION: z.coerce
    .number({ error: 'must be a number of seconds' })
    .min(60, 'must be at least 60 seconds')
    .default(DEFAULTS.retentionSeconds)
    .describe(
      'Seconds settled tasks and stored callbacks are kept after their callback or deadline (pending ones always).',
    ),
  CALLBACK_SECRET: token.describe('If set, callbacks are only accepted on /callback/<secret>[/<taskId>].'),
  API_TOKEN: token.describe('If set, the /tasks API requires `Authorization: Bearer <token>`.'),
  CALLBACK_PATH: z
    .string()
    .regex(/^\/[A-Za-z0-9_/-]*[A-Za-z0-9_-]$/, 'must be a path like /callback')
    .default(DEFAULTS.prefix)
    .describe('Path of the callback route family.'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: 'must be one of fatal, error, warn, info, debug, trace, silent',
    })
    .default('info')
    .describe('Log level (JSON logs on stdout).'),
  HEADERS_TIMEOUT_MS: millis(10_000).describe('Time a client has to send the request headers (slowloris guard).'),
  REQUEST_TIMEOUT_MS: millis(30_000).describe('Time a client has to send the whole request.'),
  KEEP_ALIVE_TIMEOUT_MS: millis(5_000).describe('Idle keep-alive connection lifetime.'),
  SHUTDOWN_TIMEOUT_MS: millis(10_000).describe(
    'On SIGTERM/SIGINT, how long in-flight requests may take before connections are cut.',
  ),
  FORWARD_URL: forwardUrl.describe(
    'If set, every stored result is POSTed to this URL of the app, at least once (Standard Webhooks signed). Never logged.',
  ),
  FORWARD_SECRET: forwardSecret.describe(
    'Signing secret for forwards, whsec_<base64>; required with FORWARD_URL. The app verifies with it.',
  ),
  FORWARD_EVENTS: forwardEvents.describe(
    'Which events are forwarded: delivered (a first result), late (a first result after the deadline), missed.',
  ),
  FORWARD_TIMEOUT_MS: millis(10_000).describe('Time one forward attempt may take before it counts as a timeout.'),
  FORWARD_MAX_AGE: z.coerce
    .number({ error: 'must be a number of seconds' })
    .min(1, 'must be at least 1 second')
    .default(24 * 3600)
    .describe('Seconds a forward is retried before it becomes a dead letter (replayable); ≤ RETENTION.'),
  FORWARD_CONCURRENCY: z.coerce
    .number({ error: 'must be a number' })
    .int('must be a whole number')
    .min(1, 'must be at least 1')
    .max(1000, 'must be at most 1000')
    .default(16)
    .describe('Forward attempts in flight at once, per instance.'),
  FORWARD_RETRY_MIN_MS: millis(1000).describe('First retry delay, and the floor of every later one.'),
  FORWARD_RETRY_MAX_MS: millis(600_000).describe(
    'Longest retry delay (exponential backoff, full jitter; Retry-After capped here).',
  ),
  FORWARD_THREAD: z
    .enum(['worker', 'loop'], { error: 'must be worker or loop' })
    .default('worker')
    .describe(
      'Where forward attempts run: worker (a thread at the lowest CPU priority, off the callback event loop) or loop.',
    ),
});

export type Config = z.infer<typeof CONFIG_SCHEMA>;

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Reads and validates the configuration; throws ConfigError naming every bad variable. Empty strings count as unset. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(CONFIG_SCHEMA.shape)) {
    const value = env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const parsed = CONFIG_SCHEMA.safeParse(input);
  if (parsed.success) {
    const c = parsed.data;
    if (c.HEADERS_TIMEOUT_MS > c.REQUEST_TIMEOUT_MS) {
      throw new ConfigError(['HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS']);
    }
    const forwarding: string[] = [];
    // Unsigned forwards would let anyone who can reach the app's endpoint forge results: no secret, no forwarding.
    if (c.FORWARD_URL !== undefined && c.FORWARD_SECRET === undefined) {
      forwarding.push('FORWARD_SECRET: required when FORWARD_URL is set (echo "whsec_$(openssl rand -base64 32)")');
    }
    if (c.FORWARD_RETRY_MIN_MS > c.FORWARD_RETRY_MAX_MS) {
      forwarding.push('FORWARD_RETRY_MIN_MS: must not exceed FORWARD_RETRY_MAX_MS');
    }
    if (c.FORWARD_URL !== undefined && c.FORWARD_MAX_AGE > c.RETENTION) {
      forwarding.push('FORWARD_MAX_AGE: must not exceed RETENTION (a forward is deleted with its task)');
    }
    if (forwarding.length > 0) throw new ConfigError(forwarding);
    return c;
  }
  throw new ConfigError(
    parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '?');
      const shown = SECRET_VARIABLES.has(key) ? '' : ` (got "${String(input[key]).slice(0, 80)}")`;
      return `${key}: ${issue.message}${shown}`;
    }),
  );
}

/** The default a configuration schema entry declares (zod keeps it on the schema's definition), if any. */
export function schemaDefault(schema: unknown): unknown {
  return (schema as { def?: { defaultValue?: unknown } }).def?.defaultValue;
}

/** The configuration as it is safe to log: secrets shown only as set/unset, credentials cut from STORE_URL. */
export function redactedConfig(c: Config): Record<string, unknown> {
  return {
    ...c,
    CALLBACK_SECRET: c.CALLBACK_SECRET ? '[set]' : '[unset]',
    API_TOKEN: c.API_TOKEN ? '[set]' : '[unset]',
    STORE_URL: redactUrlCredentials(c.STORE_URL),
    FORWARD_URL: c.FORWARD_URL ? '[set]' : '[unset]',
    FORWARD_SECRET: c.FORWARD_SECRET ? '[set]' : '[unset]',
  };
}

/** What the bounds below cannot read from the schema: relations between variables, allowed characters. */
const EXTRA_BOUNDS: Partial<Record<keyof Config, string>> = {
  HEADERS_TIMEOUT_MS: '≤ REQUEST_TIMEOUT_MS',
  FORWARD_URL: 'http:// or https://',
  FORWARD_SECRET: 'whsec_ + base64 of 24-64 bytes',
  FORWARD_MAX_AGE: '≤ RETENTION',
  FORWARD_RETRY_MIN_MS: '≤ FORWARD_RETRY_MAX_MS',
  CALLBACK_SECRET: 'A-Z a-z 0-9 _ ~ . -',
  API_TOKEN: 'A-Z a-z 0-9 _ ~ . -',
};

/** Minimal view of the zod 4 schema introspection used below (the public getters of number, string and enum schemas). */
interface Introspected {
  def: { type: string; innerType?: Introspected; entries?: Record<string, string> };
  minValue?: number | null;
  maxValue?: number | null;
  isInt?: boolean;
  minLength?: number | null;
  maxLength?: number | null;
}

/**
 * A variable's bounds as a short human text (`0-65535`, `≥ 1`, `16-256 characters`, `one of …`), read from the
 * schema itself so `--help` and the README's table cannot drift from what start-up validation enforces.
 */
export function configBounds(name: keyof Config): string {
  let t = CONFIG_SCHEMA.shape[name] as unknown as Introspected;
  while (t.def.innerType) t = t.def.innerType;
  const parts: string[] = [];
  if (t.def.type === 'number') {
    const finite = (n: number | null | undefined) =>
      typeof n === 'number' && Number.isFinite(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER;
    const { minValue: min, maxValue: max } = t;
    const unit = t.isInt ? ' (integer)' : '';
    if (finite(min) && finite(max)) parts.push(`${min}-${max}${unit}`);
    else if (finite(min)) parts.push(`≥ ${min}${unit}`);
    else if (finite(max)) parts.push(`≤ ${max}${unit}`);
  } else if (t.def.type === 'string') {
    const { minLength: min, maxLength: max } = t;
    if (typeof min === 'number' && typeof max === 'number') parts.push(`${min}-${max} characters`);
    else if (typeof min === 'number') parts.push(`≥ ${min} character${min === 1 ? '' : 's'}`);
  } else if (t.def.type === 'enum' && t.def.entries) {
    parts.push(`one of ${Object.keys(t.def.entries).join(', ')}`);
  }
  const extra = EXTRA_BOUNDS[name];
  if (extra) parts.push(extra);
  return parts.join('; ');
}

/** True for an address only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h);
}

/**
 * Warnings about a configuration that exposes something: the management listener (`/tasks` returns every stored
 * solution) on a non-loopback address without API_TOKEN. A warning, not a refusal: a container must bind 0.0.0.0 on
 * its private network for Prometheus to scrape it, and the compose stack publishes that port on the host's loopback
 * only. Never includes a secret.
 */
export function exposureWarnings(c: Config): string[] {
  if (isLoopback(c.MANAGEMENT_HOST) || c.API_TOKEN) return [];
  return [
    `MANAGEMENT_HOST=${c.MANAGEMENT_HOST} is not a loopback address and API_TOKEN is unset: anyone who can reach ` +
      `port ${c.MANAGEMENT_PORT} can read every stored solution through /tasks. Set API_TOKEN, or keep the port on ` +
      'a private network (as the compose stack does).',
  ];
}
