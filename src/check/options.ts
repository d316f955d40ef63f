/**
 * `captcha-callback-monitor check` flags and environment variables. The webhook URL can come from a flag, a file or
 * the environment; no message here ever repeats it (a wrong one is described, not echoed).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { guessFormat, NOTIFY_FORMATS, type Notifier, type NotifyFormat } from './notify.ts';
import { defaultStatePath } from './state.ts';

export const NOTIFY_ENV = 'CHECK_NOTIFY_URL';

export interface CheckOptions {
  readonly url: string;
  readonly healthzUrl: string | null;
  readonly statePath: string;
  readonly timeoutMs: number;
  readonly json: boolean;
  readonly notifier: Notifier | null;
  readonly repeatMs: number;
  /** Run again every this many ms until SIGTERM/SIGINT; 0 runs once. */
  readonly watchMs: number;
}

export class CheckUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckUsageError';
  }
}

export function checkUsage(): string {
  return [
    'Usage: captcha-callback-monitor check [options]',
    '',
    "Reads a receiver's /health/callbacks, evaluates the alert table's conditions on it (stale while expected, error",
    'rate, slow p95, low delivery rate, result hook failures, endpoint down) with the same thresholds as the',
    'Prometheus rules, and prints one line per finding. Rates cover the interval since the previous check.',
    'Exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad options, unreadable state, not a health report).',
    '',
    '  --url URL              health report URL (env CHECK_URL; default',
    '                         http://127.0.0.1:$PORT/health/callbacks, PORT defaulting to 3000)',
    '  --healthz-url URL      store probe; 5xx is "endpoint down" (default: --url with /health/callbacks',
    '                         replaced by /healthz; "none" to skip)',
    '  --state FILE           state between runs (env CHECK_STATE_FILE; default',
    '                         $STATE_DIRECTORY, $XDG_STATE_HOME/captcha-callback-monitor or',
    '                         ~/.local/state/captcha-callback-monitor, file check-<hash of the URL>.json)',
    '  --timeout SECONDS      per request (default 10)',
    '  --json                 one JSON object per check instead of text lines',
    `  --notify-file FILE     file holding the webhook URL (or env ${NOTIFY_ENV}; keeps it out of ps and history)`,
    '  --notify URL           the webhook URL itself (visible in ps: prefer --notify-file)',
    `  --notify-format FMT    ${NOTIFY_FORMATS.join('|')} (default: discord or slack from the webhook host, else json)`,
    '  --repeat DURATION      remind while an alert lasts, e.g. 1h (default: never; one message at start and end)',
    '  --watch DURATION       check every DURATION (e.g. 60s, 5m) in the foreground until SIGTERM or SIGINT',
    '  -h, --help             show this help',
  ].join('\n');
}

/** `90`, `90s`, `5m`, `2h`, `1d` → milliseconds. */
export function parseDurationMs(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new CheckUsageError(`--${name}: "${value}" is not a duration like 60, 30s, 5m or 1h`);
  const n = Number(m[1]);
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    (m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return n * factor;
}

function httpUrl(name: string, value: string, secret: boolean): string {
  let parsed: URL;
  try {
    parsed = new URL(value.trim());
  } catch {
    throw new CheckUsageError(secret ? `${name} is not a URL` : `${name}: "${value}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CheckUsageError(secret ? `${name} must be an http(s) URL` : `${name}: "${value}" must be an http(s) URL`);
  }
  return parsed.href;
}

function defaultHealthzUrl(url: string): string | null {
  const u = new URL(url);
  if (!u.pathname.endsWith('/health/callbacks')) return null;
  u.pathname = `${u.pathname.slice(0, -'/health/callbacks'.length)}/healthz`;
  u.search = '';
  return u.href;
}

export function checkOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): CheckOptions {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        url: { type: 'string' },
        'healthz-url': { type: 'string' },
        state: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean' },
        notify: { type: 'string' },
        'notify-file': { type: 'string' },
        'notify-format': { type: 'string' },
        repeat: { type: 'string' },
        watch: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    // A stray positional might be a webhook URL pasted without its flag: name the mistake, not the argument.
    if ((error as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw new CheckUsageError('check takes no positional arguments (a webhook URL goes in --notify-file)');
    }
    throw new CheckUsageError((error as Error).message);
  }
  if (values.help) throw new CheckUsageError('');
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);

  const port = Number(env.PORT);
  const localPort = Number.isInteger(port) && port > 0 && port < 65536 ? port : 3000;
  const url = httpUrl(
    '--url',
    str('url') ?? (env.CHECK_URL || `http://127.0.0.1:${localPort}/health/callbacks`),
    false,
  );
  const healthzFlag = str('healthz-url');
  const healthzUrl =
    healthzFlag === 'none' ? null : healthzFlag ? httpUrl('--healthz-url', healthzFlag, false) : defaultHealthzUrl(url);

  const timeoutMs = parseDurationMs('timeout', str('timeout') ?? '10');
  if (timeoutMs < 1) throw new CheckUsageError('--timeout must be above 0');

  let notifyUrl: string | undefined;
  let source = '';
  if (str('notify') !== undefined) {
    notifyUrl = str('notify');
    source = '--notify';
  } else if (str('notify-file') !== undefined) {
    try {
      notifyUrl = readFileSync(str('notify-file')!, 'utf8').split('\n')[0]?.trim();
    } catch (error) {
      throw new CheckUsageError(`--notify-file: cannot read it (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    source = 'the --notify-file';
  } else if (env[NOTIFY_ENV]) {
    notifyUrl = env[NOTIFY_ENV];
    source = NOTIFY_ENV;
  }
  const formatFlag = str('notify-format');
  if (formatFlag !== undefined && !(NOTIFY_FORMATS as readonly string[]).includes(formatFlag)) {
    throw new CheckUsageError(`--notify-format: "${formatFlag}" must be one of ${NOTIFY_FORMATS.join(', ')}`);
  }
  let notifier: Notifier | null = null;
  if (notifyUrl !== undefined) {
    const href = httpUrl(`the webhook URL from ${source}`, notifyUrl, true);
    notifier = { url: href, format: (formatFlag as NotifyFormat | undefined) ?? guessFormat(href), timeoutMs };
  } else if (formatFlag !== undefined) {
    throw new CheckUsageError(`--notify-format needs a webhook URL (--notify-file, ${NOTIFY_ENV} or --notify)`);
  }

  const repeatMs = str('repeat') === undefined ? 0 : parseDurationMs('repeat', str('repeat')!);
  const watchMs = str('watch') === undefined ? 0 : parseDurationMs('watch', str('watch')!);
  if (str('watch') !== undefined && watchMs < 1000) throw new CheckUsageError('--watch must be at least 1s');

  return {
    url,
    healthzUrl,
    statePath: str('state') ?? (env.CHECK_STATE_FILE || defaultStatePath(url, env)),
    timeoutMs,
    json: values.json === true,
    notifier,
    repeatMs,
    watchMs,
  };
}
