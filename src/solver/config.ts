import { readFileSync } from 'node:fs';

/**
 * Named solvers from the environment (SOLVER_<NAME>_…), validated at start-up. A separate parser from the server's
 * zod schema because the variable names are open-ended (one set per solver); every message names the variable and
 * never shows a key.
 */

export const SOLVER_PROTOCOLS = ['res.php', 'createTask'] as const;
export type SolverProtocol = (typeof SOLVER_PROTOCOLS)[number];

/** Solver names label metrics, so their number is bounded. */
export const MAX_SOLVERS = 16;

/**
 * The solvers' documented limits, as the minimums configuration may not go below.
 *
 * - res.php (2Captcha, RuCaptcha, CaptchaAI): "If captcha is not solved yet - retry in 5 seconds" and accounts
 *   over 20 × captchas + 1200 res.php requests are blocked (https://2captcha.com/api-docs/limits). At most 20 asks
 *   per task keeps the poller inside that quota whatever the traffic.
 * - createTask: CapMonster Cloud refuses getTaskResult faster than every 2 s and allows 120 requests per task
 *   (https://docs.capmonster.cloud/docs/api/methods/get-task-result/); CapSolver answers at most 120 queries per
 *   task, keeps a result 5 minutes and asks to retry "processing" after 3 s
 *   (https://docs.capsolver.com/en/guide/api-gettaskresult); Anti-Captcha's getBalance no more than once every 30 s
 *   (https://anti-captcha.com/apidoc/methods/getBalance). One protocol covers all three, so its defaults are the
 *   strictest of them: 3 s between asks, 120 asks per task, getBalance once a minute.
 */
export const DOCUMENTED_LIMITS = {
  'res.php': { minPollIntervalSeconds: 5, defaultPollIntervalSeconds: 5, maxPollsPerTask: 20 },
  createTask: { minPollIntervalSeconds: 2, defaultPollIntervalSeconds: 3, maxPollsPerTask: 120 },
} as const satisfies Record<
  SolverProtocol,
  { minPollIntervalSeconds: number; defaultPollIntervalSeconds: number; maxPollsPerTask: number }
>;

/** getBalance: at most once a minute by default (the issue's bound), never faster than Anti-Captcha's 30 s. */
export const BALANCE_INTERVAL = { defaultSeconds: 60, minSeconds: 30 } as const;

/**
 * RECOVERY_AFTER default: CapSolver keeps a result 5 minutes after createTask and delivers within 1 to 30 s
 * (its getTaskResult page). Asking after 60 s leaves a callback 30 s of slack beyond the slowest documented solve,
 * and four minutes of the window, room for more than 60 asks at 3 s, before CapSolver drops the result.
 */
export const RECOVERY_AFTER_DEFAULT_SECONDS = 60;

/** How one solver paces recovery polls for a task. */
export interface SolverPacing {
  /** Milliseconds between two asks about one task (the first backoff step; later steps grow up to 30 s). */
  readonly pollIntervalMs: number;
  /** Asks about one task, at most. */
  readonly maxPollsPerTask: number;
  /** Milliseconds between two getBalance calls. */
  readonly balanceIntervalMs: number;
}

export interface SolverConfig {
  /** `<NAME>` lowercased: `[a-z0-9_]`, 1-32 characters; labels metrics and names the solver on tasks. */
  readonly name: string;
  readonly protocol: SolverProtocol;
  /** The API's scheme and host (and port), no path: the protocol adds `/res.php` or `/getTaskResult`. */
  readonly url: string;
  /** The API key. Never log it, print it or put it in an error message. */
  readonly key: string;
  /** CaptchaSolverLowBalance fires when the balance is at or below this; undefined: no alert for this solver. */
  readonly lowBalance: number | undefined;
  readonly pacing: SolverPacing;
}

export interface RecoveryConfig {
  /** Seconds after registration before a task without its callback is asked about. */
  readonly recoveryAfterSeconds: number;
}

export interface SolversConfig {
  readonly solvers: readonly SolverConfig[];
  readonly recovery: RecoveryConfig;
}

/** The variables each solver may have, as `SOLVER_<NAME>_<SUFFIX>`; README and --help list these. */
export const SOLVER_VARIABLES = {
  PROTOCOL:
    'res.php (2Captcha, RuCaptcha, CaptchaAI…) or createTask (Anti-Captcha, CapMonster Cloud, CapSolver…). Required.',
  URL: 'The API scheme and host, e.g. https://2captcha.com or https://api.capsolver.com (no path). Required.',
  KEY: 'The API key. Required unless SOLVER_<NAME>_KEY_FILE is set (not both).',
  KEY_FILE: 'A file holding the API key (first line), e.g. a mounted secret.',
  LOW_BALANCE: 'CaptchaSolverLowBalance fires when the balance is at or below this (account currency). Optional.',
  POLL_INTERVAL: 'Seconds between recovery asks about one task (res.php ≥ 5, default 5; createTask ≥ 2, default 3).',
  MAX_POLLS: 'Recovery asks per task at most (res.php ≤ 20, default 20; createTask ≤ 120, default 120).',
  BALANCE_INTERVAL: 'Seconds between getBalance calls (≥ 30, default 60).',
} as const;
type Suffix = keyof typeof SOLVER_VARIABLES;
const SUFFIXES = Object.keys(SOLVER_VARIABLES) as Suffix[];

export class SolverConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid solver configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SolverConfigError';
    this.problems = problems;
  }
}

const NAME = /^[A-Za-z0-9_]{1,32}$/;

/**
 * Splits `SOLVER_<NAME>_<SUFFIX>` into name and suffix. KEY_FILE, LOW_BALANCE, POLL_INTERVAL, MAX_POLLS and
 * BALANCE_INTERVAL are tried before KEY etc., so a name may itself contain underscores (`SOLVER_TWO_CAPTCHA_URL`).
 */
function split(variable: string): { name: string; suffix: Suffix } | undefined {
  const rest = variable.slice('SOLVER_'.length);
  const bySpecificity = [...SUFFIXES].sort((a, b) => b.length - a.length);
  for (const suffix of bySpecificity) {
    if (rest.endsWith(`_${suffix}`)) {
      const name = rest.slice(0, -suffix.length - 1);
      if (name.length > 0) return { name, suffix };
    }
  }
  return undefined;
}

/** A numeric variable's range and the value used when it is unset (or invalid, beside the recorded problem). */
interface NumberBounds {
  readonly fallback: number;
  readonly min: number;
  readonly max: number;
  readonly whole?: boolean;
}

function seconds(
  problems: string[],
  variable: string,
  raw: string | undefined,
  { fallback, min, max, whole = false }: NumberBounds,
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || raw.trim() === '')
    problems.push(`${variable}: must be a number (got "${raw.slice(0, 40)}")`);
  else if (whole && !Number.isInteger(n))
    problems.push(`${variable}: must be a whole number (got "${raw.slice(0, 40)}")`);
  else if (n < min || n > max) problems.push(`${variable}: must be ${min}-${max} (got ${n})`);
  else return n;
  return fallback;
}

/**
 * Reads every SOLVER_* variable and RECOVERY_AFTER; throws SolverConfigError naming each bad variable. Empty strings
 * count as unset. `readKeyFile` is injectable for tests; the default reads the file's first line.
 */
export function loadSolversConfig(
  env: NodeJS.ProcessEnv = process.env,
  readKeyFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): SolversConfig {
  const problems: string[] = [];
  const byName = new Map<string, Partial<Record<Suffix, string>>>();
  for (const [variable, value] of Object.entries(env)) {
    if (!variable.startsWith('SOLVER_') || value === undefined || value === '') continue;
    const parts = split(variable);
    if (!parts) {
      problems.push(`${variable}: unknown variable (expected SOLVER_<NAME>_${SUFFIXES.join('|')})`);
      continue;
    }
    if (!NAME.test(parts.name)) {
      problems.push(`${variable}: the solver name "${parts.name}" must be 1-32 characters of A-Z a-z 0-9 _`);
      continue;
    }
    const name = parts.name.toLowerCase();
    const entry = byName.get(name) ?? {};
    entry[parts.suffix] = value;
    byName.set(name, entry);
  }
  if (byName.size > MAX_SOLVERS) {
    problems.push(`SOLVER_*: at most ${MAX_SOLVERS} solvers (got ${byName.size}); solver names label metrics`);
  }

  const solvers: SolverConfig[] = [];
  for (const [name, v] of [...byName].sort(([a], [b]) => a.localeCompare(b))) {
    const prefix = `SOLVER_${name.toUpperCase()}_`;
    const before = problems.length;
    const protocol = v.PROTOCOL as SolverProtocol | undefined;
    if (protocol === undefined) problems.push(`${prefix}PROTOCOL: required (res.php or createTask)`);
    else if (!SOLVER_PROTOCOLS.includes(protocol)) {
      problems.push(`${prefix}PROTOCOL: must be res.php or createTask (got "${String(v.PROTOCOL).slice(0, 40)}")`);
    }
    let url = '';
    if (v.URL === undefined)
      problems.push(`${prefix}URL: required (the API's scheme and host, e.g. https://2captcha.com)`);
    else {
      try {
        const u = new URL(v.URL);
        if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
        if (u.username || u.password) {
          problems.push(`${prefix}URL: must not carry credentials (put the key in ${prefix}KEY or ${prefix}KEY_FILE)`);
        } else if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
          problems.push(
            `${prefix}URL: scheme and host only, no path or query (the protocol adds /res.php or /getTaskResult)`,
          );
        } else url = u.origin;
      } catch {
        problems.push(`${prefix}URL: must be an http(s) URL such as https://api.capsolver.com`);
      }
    }
    let key = '';
    if (v.KEY !== undefined && v.KEY_FILE !== undefined)
      problems.push(`${prefix}KEY and ${prefix}KEY_FILE: set one, not both`);
    else if (v.KEY !== undefined) key = v.KEY.trim();
    else if (v.KEY_FILE !== undefined) {
      try {
        key = (readKeyFile(v.KEY_FILE).split(/\r?\n/)[0] ?? '').trim();
        if (key === '') problems.push(`${prefix}KEY_FILE: the file ${v.KEY_FILE} is empty`);
      } catch (error) {
        problems.push(
          `${prefix}KEY_FILE: cannot read ${v.KEY_FILE} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
        );
      }
    } else problems.push(`${prefix}KEY or ${prefix}KEY_FILE: required (the solver's API key)`);
    // The key goes into a query string or a JSON body; a control character or space there is a paste error.
    if (key !== '' && !/^[\x21-\x7e]{1,256}$/.test(key)) {
      problems.push(`${prefix}KEY: must be 1-256 printable characters without spaces (value not shown)`);
    }
    const lowBalance =
      v.LOW_BALANCE === undefined
        ? undefined
        : seconds(problems, `${prefix}LOW_BALANCE`, v.LOW_BALANCE, {
            fallback: 0,
            min: 0,
            max: Number.MAX_SAFE_INTEGER,
          });
    const limits = DOCUMENTED_LIMITS[protocol && SOLVER_PROTOCOLS.includes(protocol) ? protocol : 'res.php'];
    const pacingBounds: Record<'POLL_INTERVAL' | 'MAX_POLLS' | 'BALANCE_INTERVAL', NumberBounds> = {
      POLL_INTERVAL: { fallback: limits.defaultPollIntervalSeconds, min: limits.minPollIntervalSeconds, max: 300 },
      MAX_POLLS: { fallback: limits.maxPollsPerTask, min: 1, max: limits.maxPollsPerTask, whole: true },
      BALANCE_INTERVAL: { fallback: BALANCE_INTERVAL.defaultSeconds, min: BALANCE_INTERVAL.minSeconds, max: 86_400 },
    };
    const [interval, maxPolls, balance] = (['POLL_INTERVAL', 'MAX_POLLS', 'BALANCE_INTERVAL'] as const).map((k) =>
      seconds(problems, `${prefix}${k}`, v[k], pacingBounds[k]),
    ) as [number, number, number];
    if (problems.length > before || protocol === undefined) continue;
    solvers.push({
      name,
      protocol,
      url,
      key,
      lowBalance,
      pacing: { pollIntervalMs: interval * 1000, maxPollsPerTask: maxPolls, balanceIntervalMs: balance * 1000 },
    });
  }
  const recoveryAfterSeconds = seconds(
    problems,
    'RECOVERY_AFTER',
    env.RECOVERY_AFTER === '' ? undefined : env.RECOVERY_AFTER,
    { fallback: RECOVERY_AFTER_DEFAULT_SECONDS, min: 1, max: 7 * 24 * 3600 },
  );
  if (problems.length > 0) throw new SolverConfigError(problems);
  return { solvers, recovery: { recoveryAfterSeconds } };
}

/** The solver configuration as it is safe to log: keys shown only as set. */
export function redactedSolvers(config: SolversConfig): Record<string, unknown> {
  return {
    RECOVERY_AFTER: config.recovery.recoveryAfterSeconds,
    solvers: config.solvers.map((s) => ({
      name: s.name,
      protocol: s.protocol,
      url: s.url,
      key: '[set]',
      lowBalance: s.lowBalance ?? null,
      pacing: s.pacing,
    })),
  };
}

/** --help lines for the SOLVER_ family and RECOVERY_AFTER. */
export function solverUsage(): string[] {
  return [
    'Solvers (optional; each named <NAME>, A-Z a-z 0-9 _, lowercased as the solver name; at most 16):',
    ...SUFFIXES.map((s) => `  SOLVER_<NAME>_${s.padEnd(16)} ${SOLVER_VARIABLES[s]}`),
    `  RECOVERY_AFTER${' '.repeat(16)} Seconds after registration before a task without its callback is asked about (default ${RECOVERY_AFTER_DEFAULT_SECONDS}).`,
  ];
}
