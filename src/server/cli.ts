#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { monitorInternals } from '@captcha-callback-monitor/koa/internal';
import { checkCommand } from '../check/command.ts';
import { demoCommand } from '../demo/cli.ts';
import { solverCommand } from '../solver/command.ts';
import { loadSolversConfig, redactedSolvers, SolverConfigError, solverUsage } from '../solver/config.ts';
import { createRecoveryQueue } from '../solver/createRecoveryQueue.ts';
import type { RecoveryQueue } from '../solver/RecoveryQueue.ts';
import { createSolverRuntime } from '../solver/runtime.ts';
import {
  CONFIG_SCHEMA,
  type Config,
  ConfigError,
  configBounds,
  exposureWarnings,
  loadConfig,
  redactedConfig,
  schemaDefault,
} from './config.ts';
import { createStore } from './createStore.ts';
import { createLogger } from './logger.ts';
import { loadMetricsExportConfig, TelemetryConfigError } from './otlpConfig.ts';
import { ReceiverServer } from './ReceiverServer.ts';
import { listenErrorMessage } from './startupErrors.ts';
import { startTelemetry } from './telemetry.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function usage(): string {
  const vars = Object.entries(CONFIG_SCHEMA.shape).map(([name, schema]) => {
    const def = schemaDefault(schema);
    const shown = def === undefined ? '' : ` (default ${String(def)})`;
    const bounds = configBounds(name as keyof Config);
    return `  ${name.padEnd(22)} ${schema.description ?? ''}${shown}${bounds === '' ? '' : ` [${bounds}]`}`;
  });
  return [
    `captcha-callback-monitor ${pkg.version}: a monitored receiver for CAPTCHA solver callbacks.`,
    '',
    'Usage:',
    '  captcha-callback-monitor [serve]    run the receiver (public + management listeners)',
    '  captcha-callback-monitor demo       send demo traffic to a receiver (demo --help for its options)',
    '  captcha-callback-monitor check      check a receiver without Prometheus, notify a chat (check --help)',
    '  captcha-callback-monitor solver     register, list or delete a res.php pingback address (solver --help)',
    '  captcha-callback-monitor --help     show this help',
    '  captcha-callback-monitor --version  show the version',
    '',
    'Configuration (environment variables, validated at start-up):',
    ...vars,
    '',
    ...solverUsage(),
    '',
    'OTEL_METRICS_EXPORTER=prometheus (default), otlp, prometheus,otlp or none, with the standard OTEL_EXPORTER_OTLP_* variables; other OTEL_* variables apply too (traces and logs are off by default).',
  ].join('\n');
}

/** A configuration problem: one line on stderr naming the variable, exit status 2 (never a stack trace). */
function exitWithConfigError(message: string): never {
  process.stderr.write(`captcha-callback-monitor: ${message}\n`);
  process.exit(2);
}

/** Runs a configuration reader; its own error class becomes exitWithConfigError, anything else propagates. */
function loadOrExit<T>(load: () => T, errorClass: new (...args: never[]) => Error): T {
  try {
    return load();
  } catch (error) {
    if (error instanceof errorClass) exitWithConfigError(error.message);
    throw error;
  }
}

async function serve(): Promise<void> {
  const config = loadOrExit(loadConfig, ConfigError);
  const solvers = loadOrExit(loadSolversConfig, SolverConfigError);
  const metricsExport = loadOrExit(loadMetricsExportConfig, TelemetryConfigError);
  const logger = createLogger(config.LOG_LEVEL);
  const store = await createStore(config.STORE_URL).catch((error: Error) =>
    exitWithConfigError(`STORE_URL: ${error.message}`),
  );
  const telemetry = startTelemetry(pkg.version, { metricsExport, logger });
  const solverRuntime = createSolverRuntime(solvers, telemetry.meter, logger);
  // The recovery queue lives beside the store (same SQLite file, same Redis), only when a solver is configured.
  let queue: RecoveryQueue | undefined;
  if (solverRuntime.enabled) {
    queue = await createRecoveryQueue(config.STORE_URL).catch((error: Error) =>
      exitWithConfigError(`STORE_URL: recovery queue: ${error.message}`),
    );
  }
  const server = new ReceiverServer({
    config,
    store,
    meter: telemetry.meter,
    ...(telemetry.prometheus ? { scrape: telemetry.prometheus.scrape } : {}),
    logger,
    ...(queue ? { recovery: (monitor) => solverRuntime.recovery(monitorInternals(monitor), queue) } : {}),
  });
  // Before anything listens: a signal that arrived between "listening" and its handler would kill the process with
  // Node's default action, mid-start-up, instead of stopping it cleanly.
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    try {
      await solverRuntime.stop();
      await server.stop();
      await telemetry.shutdown();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ error: { message: (error as Error).message } }, 'unclean shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  const bound = await server.start().catch((error: NodeJS.ErrnoException) => {
    // One line naming the cause: the variable and port for a listener, else the store's own message.
    const line =
      error.syscall === 'listen' || error.syscall === 'getaddrinfo'
        ? listenErrorMessage(error, config, server.publicServer.listening ? 'management' : 'public')
        : `STORE_URL: ${error.message}`;
    process.stderr.write(`captcha-callback-monitor: ${line.replace(/\s*\n\s*/g, '; ')}\n`);
    process.exit(1);
  });
  await solverRuntime.start();
  // Warnings before "listening": whoever waits for that line (a supervisor, a test) has seen them by then.
  for (const warning of exposureWarnings({ ...config, MANAGEMENT_PORT: bound.management.port }))
    logger.warn({ variable: 'MANAGEMENT_HOST' }, warning);
  logger.info(
    {
      config: redactedConfig(config),
      solvers: redactedSolvers(solvers),
      public: bound.public,
      management: bound.management,
      version: pkg.version,
    },
    'listening',
  );
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === 'demo') return void (await demoCommand(argv.slice(1)));
  if (argv[0] === 'check') return process.exit(await checkCommand(argv.slice(1)));
  if (argv[0] === 'solver') return process.exit(await solverCommand(argv.slice(1)));
  const { values, positionals } = parseArgs({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) return void process.stdout.write(`${usage()}\n`);
  if (values.version) return void process.stdout.write(`${pkg.version}\n`);
  const command = positionals[0] ?? 'serve';
  if (command === 'serve') return serve();
  process.stderr.write(`captcha-callback-monitor: unknown command "${command}"\n\n${usage()}\n`);
  process.exit(2);
}

main(process.argv.slice(2)).catch((error: Error) => {
  process.stderr.write(`captcha-callback-monitor: ${error.message}\n`);
  process.exit(1);
});
