/**
 * The check's memory between runs: the previous totals (so rates cover the interval since the previous check) and
 * the alerts that are firing (so a notification goes out once when one starts and once when it ends).
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Severity } from '../alerting/rules.ts';
import type { Baseline, Finding } from './rules.ts';

export const STATE_VERSION = 1;

/** One alert the check has seen firing and not yet told the end of. */
export interface AlertRecord {
  readonly severity: Severity;
  /** Unix ms when it started firing. */
  readonly since: number;
  /** False once it stopped firing but the "resolved" message has not gone out yet. */
  readonly firing: boolean;
  /** The latest finding (for the resolved message: what it was). */
  readonly last: Finding;
  /** True once a "firing" message reached the webhook; a "resolved" one is due only then. */
  readonly notified: boolean;
  readonly notifiedAt: number | null;
}

export interface CheckState {
  readonly version: typeof STATE_VERSION;
  readonly checkedAt: number | null;
  readonly baselines: Record<string, Baseline>;
  readonly alerts: Record<string, AlertRecord>;
}

export const EMPTY_STATE: CheckState = { version: STATE_VERSION, checkedAt: null, baselines: {}, alerts: {} };

/**
 * Where the state lives unless `--state` or CHECK_STATE_FILE says otherwise: systemd's $STATE_DIRECTORY (a unit
 * with StateDirectory=), else $XDG_STATE_HOME/captcha-callback-monitor, else ~/.local/state/captcha-callback-monitor;
 * one file per health URL (a hash of it: the URL itself may carry credentials).
 */
export function defaultStatePath(url: string, env: NodeJS.ProcessEnv = process.env): string {
  const hash = createHash('sha256').update(url).digest('hex').slice(0, 16);
  const file = `check-${hash}.json`;
  const systemd = env.STATE_DIRECTORY?.split(':')[0];
  if (systemd) return join(systemd, file);
  const base = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  return join(base, 'captcha-callback-monitor', file);
}

export class StateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StateError';
  }
}

/** The saved state, or the empty one when there is none yet. A file that cannot be parsed is an error, not reset. */
export async function loadState(path: string): Promise<CheckState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_STATE;
    throw new StateError(`cannot read the state file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let parsed: Partial<CheckState>;
  try {
    parsed = JSON.parse(text) as Partial<CheckState>;
  } catch {
    throw new StateError(`the state file ${path} is not JSON: delete it to start afresh`);
  }
  if (parsed.version !== STATE_VERSION || typeof parsed.baselines !== 'object' || typeof parsed.alerts !== 'object') {
    throw new StateError(
      `the state file ${path} is not a check state (version ${STATE_VERSION}): delete it to start afresh`,
    );
  }
  return {
    version: STATE_VERSION,
    checkedAt: parsed.checkedAt ?? null,
    baselines: parsed.baselines ?? {},
    alerts: parsed.alerts ?? {},
  };
}

/** Writes the state atomically (a temporary file renamed over the old one), readable by its owner only. */
export async function saveState(path: string, state: CheckState): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, path);
  } catch (error) {
    throw new StateError(`cannot write the state file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}
