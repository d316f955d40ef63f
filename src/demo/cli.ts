/**
 * `captcha-callback-monitor demo`: flags and environment variables for the traffic generator. Flags win over the
 * environment; every value is validated before the first request.
 */
import { parseArgs } from 'node:util';
import { type CallbackFormat, FORMATS } from '@captcha-callback-monitor/koa';
import {
  DEFAULT_TRAFFIC,
  ReceiverNotReadyError,
  runTraffic,
  type TrafficOptions,
  type TrafficStats,
  waitForReceiver,
} from './trafficGenerator.ts';

/** Flag → environment variable, default and meaning; the usage text is rendered from this table. */
const OPTIONS = {
  'management-url': {
    env: 'DEMO_MANAGEMENT_URL',
    def: 'http://127.0.0.1:9464',
    help: 'receiver management URL (comma list: several instances, used in turn)',
  },
  'callback-url': {
    env: 'DEMO_CALLBACK_URL',
    def: 'http://127.0.0.1:3000/callback',
    help: 'callback URL for the solver (add /<secret> with CALLBACK_SECRET; comma list: a load balancer)',
  },
  'api-token': { env: 'API_TOKEN', def: '', help: 'bearer token for /tasks (the receiver’s API_TOKEN)' },
  rate: { env: 'DEMO_RATE', def: String(DEFAULT_TRAFFIC.rate), help: 'tasks registered per second' },
  'failure-ratio': {
    env: 'DEMO_FAILURE_RATIO',
    def: String(DEFAULT_TRAFFIC.failureRatio),
    help: 'share of callbacks reporting a solver failure (0-1)',
  },
  'lost-ratio': {
    env: 'DEMO_LOST_RATIO',
    def: String(DEFAULT_TRAFFIC.lostRatio),
    help: 'share of tasks that never get a callback (0-1)',
  },
  'invalid-ratio': {
    env: 'DEMO_INVALID_RATIO',
    def: String(DEFAULT_TRAFFIC.invalidRatio),
    help: 'share of tasks that first get a malformed callback (0-1)',
  },
  'duplicate-ratio': {
    env: 'DEMO_DUPLICATE_RATIO',
    def: String(DEFAULT_TRAFFIC.duplicateRatio),
    help: 'share of callbacks sent twice (0-1)',
  },
  latency: {
    env: 'DEMO_LATENCY',
    def: `${DEFAULT_TRAFFIC.latency.min}-${DEFAULT_TRAFFIC.latency.max}`,
    help: 'solve time in seconds, MIN-MAX or one value',
  },
  formats: { env: 'DEMO_FORMATS', def: FORMATS.join(','), help: `callback formats to rotate (${FORMATS.join(',')})` },
  duration: {
    env: 'DEMO_DURATION',
    def: `${DEFAULT_TRAFFIC.durationSeconds}s`,
    help: 'stop after this long (e.g. 90, 30s, 5m, 2h; 0 = until SIGINT/SIGTERM)',
  },
  count: { env: 'DEMO_COUNT', def: '0', help: 'stop after this many tasks (0 = no limit)' },
  wait: {
    env: 'DEMO_WAIT',
    def: '30s',
    help: 'wait this long for the receiver to answer /healthz and /metrics before starting (0 = do not wait)',
  },
  seed: { env: 'DEMO_SEED', def: String(DEFAULT_TRAFFIC.seed), help: 'seed for the random choices' },
} as const;

type OptionName = keyof typeof OPTIONS;

export function demoUsage(): string {
  const lines = Object.entries(OPTIONS).map(([flag, o]) => {
    const def = o.def === '' ? '' : ` (default ${o.def})`;
    return `  --${flag.padEnd(16)} ${o.env.padEnd(21)} ${o.help}${def}`;
  });
  return [
    'Usage: captcha-callback-monitor demo [options]',
    '',
    'Plays an app registering tasks (POST /tasks) and a solver calling back, so the dashboards have traffic.',
    'Progress goes to stderr once a second; a JSON summary goes to stdout at the end.',
    '',
    '  flag               environment           meaning',
    ...lines,
    '  --quiet                                  no progress lines',
  ].join('\n');
}

export class DemoUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DemoUsageError';
  }
}

/** `90`, `90s`, `5m`, `2h`, `1.5m` → seconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new DemoUsageError(`duration: "${value}" is not a duration like 90, 30s, 5m or 2h`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return unit === 'ms' ? n / 1000 : unit === 'm' ? n * 60 : unit === 'h' ? n * 3600 : n;
}

function ratio(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new DemoUsageError(`${name}: "${value}" must be a number from 0 to 1`);
  }
  return n;
}

/** One http(s) URL, or a comma-separated list of them (several receiver instances). */
function urls(name: string, value: string): string {
  const list = value.split(',').map((u) => u.trim());
  for (const u of list) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new DemoUsageError(`${name}: "${u}" is not a URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new DemoUsageError(`${name}: "${u}" must be an http(s) URL`);
    }
  }
  return list.join(',');
}

/** Resolves flags + environment into traffic options (without the progress sink and signal). */
export function demoOptions(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): TrafficOptions & { quiet: boolean; waitSeconds: number } {
  const flagSpec = Object.fromEntries(Object.keys(OPTIONS).map((k) => [k, { type: 'string' as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { ...flagSpec, quiet: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    throw new DemoUsageError((error as Error).message);
  }
  if (values.help) throw new DemoUsageError('');
  const get = (name: OptionName): string => {
    const flag = values[name];
    if (typeof flag === 'string') return flag;
    const fromEnv = env[OPTIONS[name].env];
    return fromEnv !== undefined && fromEnv !== '' ? fromEnv : OPTIONS[name].def;
  };

  const rate = Number(get('rate'));
  if (!Number.isFinite(rate) || rate <= 0 || rate > 10_000) {
    throw new DemoUsageError(`rate: "${get('rate')}" must be a number of tasks per second, > 0 and ≤ 10000`);
  }
  const latencyText = get('latency');
  const lat = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(latencyText.trim());
  if (!lat) throw new DemoUsageError(`latency: "${latencyText}" must be seconds, MIN-MAX or one value`);
  const min = Number(lat[1]);
  const max = lat[2] === undefined ? min : Number(lat[2]);
  if (max < min) throw new DemoUsageError(`latency: "${latencyText}": MAX must not be below MIN`);
  const formats = get('formats')
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '');
  const unknown = formats.filter((f) => !(FORMATS as readonly string[]).includes(f));
  if (formats.length === 0 || unknown.length > 0) {
    throw new DemoUsageError(`formats: "${get('formats')}" must be a comma list of ${FORMATS.join(', ')}`);
  }
  const count = Number(get('count'));
  if (!Number.isInteger(count) || count < 0) throw new DemoUsageError(`count: "${get('count')}" must be 0 or more`);
  const seed = Number(get('seed'));
  if (!Number.isInteger(seed)) throw new DemoUsageError(`seed: "${get('seed')}" must be a whole number`);
  const token = get('api-token');

  return {
    ...DEFAULT_TRAFFIC,
    managementUrl: urls('management-url', get('management-url')),
    callbackUrl: urls('callback-url', get('callback-url')),
    apiToken: token === '' ? undefined : token,
    rate,
    failureRatio: ratio('failure-ratio', get('failure-ratio')),
    lostRatio: ratio('lost-ratio', get('lost-ratio')),
    invalidRatio: ratio('invalid-ratio', get('invalid-ratio')),
    duplicateRatio: ratio('duplicate-ratio', get('duplicate-ratio')),
    latency: { min, max },
    formats: formats as CallbackFormat[],
    durationSeconds: parseDuration(get('duration')),
    count,
    seed,
    quiet: values.quiet === true,
    waitSeconds: parseDuration(get('wait')),
  };
}

/**
 * The `demo` subcommand: waits for the receiver (up to --wait), runs until the duration/count is reached or
 * SIGINT/SIGTERM, then prints a JSON summary on stdout. Exit code 0; 1 when the receiver never answered or any
 * request failed; 2 for bad options.
 */
export async function demoCommand(argv: string[]): Promise<TrafficStats | undefined> {
  let options: ReturnType<typeof demoOptions>;
  try {
    options = demoOptions(argv);
  } catch (error) {
    if (!(error instanceof DemoUsageError)) throw error;
    if (error.message === '') {
      process.stdout.write(`${demoUsage()}\n`);
      return undefined;
    }
    process.stderr.write(`captcha-callback-monitor demo: ${error.message}\n\n${demoUsage()}\n`);
    process.exit(2);
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const { quiet, waitSeconds, ...traffic } = options;
  try {
    await waitForReceiver({ ...traffic, signal: stop.signal }, waitSeconds * 1000);
  } catch (error) {
    if (!(error instanceof ReceiverNotReadyError)) throw error;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stderr.write(`captcha-callback-monitor demo: ${error.message}\n`);
    process.exitCode = 1;
    return undefined;
  }
  const bounds = [
    traffic.durationSeconds > 0 ? `${traffic.durationSeconds} s` : '',
    traffic.count > 0 ? `${traffic.count} tasks` : '',
  ]
    .filter(Boolean)
    .join(' or ');
  if (!quiet) {
    process.stderr.write(
      `demo: ${traffic.rate} tasks/s to ${traffic.managementUrl}/tasks, callbacks to ${traffic.callbackUrl}, ` +
        `until ${bounds || 'SIGINT/SIGTERM'}\n`,
    );
  }
  const stats = await runTraffic({
    ...traffic,
    signal: stop.signal,
    progress: quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.stdout.write(`${JSON.stringify(stats)}\n`);
  if (stats.httpErrors > 0) {
    process.stderr.write(
      `captcha-callback-monitor demo: ${stats.httpErrors} request(s) failed (last: ${stats.lastError ?? 'unknown'})\n`,
    );
    process.exitCode = 1;
  }
  return stats;
}
