/**
 * `captcha-callback-monitor check`: one check (for cron or a systemd timer), or the same check in a loop with
 * `--watch` (the tutorial's `while True`), stopping cleanly on SIGTERM or SIGINT.
 */
import { probe } from './health.ts';
import { applySent, type DueNotification, step, withoutNotifier } from './lifecycle.ts';
import { messageBody, send } from './notify.ts';
import { type CheckOptions, CheckUsageError, checkOptions, checkUsage } from './options.ts';
import { type CheckResult, EXIT, jsonResult, statusOf, textLines } from './output.ts';
import { CHECK_RULES, DOWN_ROW, evaluate, type Finding, finding } from './rules.ts';
import { type CheckState, loadState, StateError, saveState } from './state.ts';

export interface Io {
  out(line: string): void;
  err(line: string): void;
  now(): number;
}

const defaultIo: Io = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  now: Date.now,
};

/** The receiver as messages name it: host and port only (no credentials, no path or query). */
export function receiverName(url: string): string {
  return new URL(url).host;
}

/** One check: read, evaluate, tell, remember. Resolves to the exit code. */
export async function runCheck(o: CheckOptions, io: Io = defaultIo): Promise<number> {
  const receiver = receiverName(o.url);
  let state: CheckState;
  try {
    state = await loadState(o.statePath);
  } catch (error) {
    if (!(error instanceof StateError)) throw error;
    io.err(`captcha-callback-monitor check: ${error.message}`);
    return EXIT.UNKNOWN;
  }
  const probed = await probe({ url: o.url, healthzUrl: o.healthzUrl, timeoutMs: o.timeoutMs });
  const now = io.now();
  let findings: Finding[];
  let evaluated: Set<string>;
  let baselines = state.baselines;
  let result: CheckResult;
  if (probed.kind === 'unknown') {
    // Nothing was judged: the state is left as it was, so nothing resolves or fires on a misread.
    result = { status: 'UNKNOWN', findings: [], notes: [probed.reason], receiver, checkedAt: now, rates: [] };
    emit(o, io, result);
    return EXIT.UNKNOWN;
  }
  if (probed.kind === 'down') {
    findings = [finding(DOWN_ROW, null, 'ratio', probed.reason)];
    // While the receiver cannot be read, the other alerts are neither resolved nor re-sent (Alertmanager inhibits
    // them the same way), and the rate baselines wait for the next report.
    evaluated = new Set([DOWN_ROW.name]);
    result = { status: statusOf(findings), findings, notes: [], receiver, checkedAt: now, rates: [] };
  } else {
    const evaluation = evaluate(probed.report, state.baselines, now);
    findings = evaluation.findings;
    baselines = evaluation.baselines;
    evaluated = new Set([DOWN_ROW.name, ...CHECK_RULES.map((r) => r.row.name)]);
    result = {
      status: statusOf(findings),
      findings,
      notes: [...probed.notes],
      receiver,
      checkedAt: now,
      report: probed.report,
      rates: evaluation.rates,
    };
  }

  const moved = step(state.alerts, findings, evaluated, now, o.repeatMs);
  let alerts = moved.alerts;
  if (o.notifier) {
    const sent: DueNotification[] = [];
    for (const due of moved.due) {
      try {
        await send(o.notifier, messageBody(due, o.notifier.format, receiver, now));
        sent.push(due);
      } catch (error) {
        // The message stays due and goes out at the next check; the error never names the webhook URL.
        io.err(
          `captcha-callback-monitor check: ${due.event} message for ${due.alert} not sent: ${(error as Error).message}`,
        );
      }
    }
    alerts = applySent(alerts, sent, now);
  } else {
    alerts = withoutNotifier(alerts);
  }

  emit(o, io, result);
  try {
    await saveState(o.statePath, { version: state.version, checkedAt: now, baselines, alerts });
  } catch (error) {
    if (!(error instanceof StateError)) throw error;
    io.err(`captcha-callback-monitor check: ${error.message}`);
    return result.status === 'OK' ? EXIT.UNKNOWN : EXIT[result.status];
  }
  return EXIT[result.status];
}

function emit(o: CheckOptions, io: Io, result: CheckResult): void {
  const stamp = o.watchMs > 0 ? `${new Date(result.checkedAt).toISOString()} ` : '';
  if (o.json) io.out(JSON.stringify(jsonResult(result)));
  else for (const line of textLines(result)) io.out(`${stamp}${line}`);
}

/** Checks every `watchMs` until `signal` aborts; a check under way finishes first (so its state is saved). */
export async function watch(o: CheckOptions, signal: AbortSignal, io: Io = defaultIo): Promise<number> {
  let last: number = EXIT.OK;
  while (!signal.aborted) {
    const started = Date.now();
    last = await runCheck(o, io);
    // A signal during the check has already fired its abort event: waiting for it now would sleep the whole interval.
    if (signal.aborted) break;
    const wait = Math.max(0, o.watchMs - (Date.now() - started));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, wait);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }
  return last;
}

/** The subcommand: parses options, runs once or watches; resolves to the process exit code. */
export async function checkCommand(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  io: Io = defaultIo,
): Promise<number> {
  let options: CheckOptions;
  try {
    options = checkOptions(argv, env);
  } catch (error) {
    if (!(error instanceof CheckUsageError)) throw error;
    if (error.message === '') {
      io.out(checkUsage());
      return EXIT.OK;
    }
    io.err(`captcha-callback-monitor check: ${error.message}\n\n${checkUsage()}`);
    return EXIT.UNKNOWN;
  }
  if (options.watchMs === 0) return runCheck(options, io);
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    io.err(`captcha-callback-monitor check: ${signal}, stopping after the current check`);
    stop.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    await watch(options, stop.signal, io);
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  io.err('captcha-callback-monitor check: stopped');
  // A supervisor's stop is not a failure: the loop ends with 0 whatever the last check found.
  return EXIT.OK;
}
