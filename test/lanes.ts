/**
 * The two test lanes. `npm test` runs both: the full suite. `npm run test:unit` runs only the unit lane, the test files
 * that start no process (no CLI, no prometheus, promtool, amtool or redis-server), in seconds: the edit loop.
 *
 * A file is in the unit lane exactly when it can start no process, by the rule of test/support/spawnRule.ts (it does
 * not import node:child_process, nor anything but the PROCESS_FREE_EXPORTS below from a module that does, however
 * indirectly). test/lanes.test.ts fails when a file is in the wrong lane, either way; and in the unit lane
 * test/support/noSpawn.ts makes every node:child_process call throw. A new test file lands in the processes lane
 * until it is listed here.
 */

export const UNIT = 'unit';
export const PROCESSES = 'processes';

/** Every test file that starts no process, relative to the repository root. */
export const UNIT_LANE: readonly string[] = [
  'test/alerting.generated.test.ts',
  'test/alerting.table.test.ts',
  'test/bench.stats.test.ts',
  'test/check.state.test.ts',
  'test/check.thresholds.test.ts',
  'test/check.watch.test.ts',
  'test/dashboards.test.ts',
  'test/delivery.retention.test.ts',
  'test/delivery.tracker.test.ts',
  'test/health.test.ts',
  'test/lanes.test.ts',
  'test/metrics.failures.test.ts',
  'test/package.imports.test.ts',
  'test/parseCallback.test.ts',
  'test/plugin.bodyparser.test.ts',
  'test/plugin.embedded.test.ts',
  'test/plugin.meterProvider.test.ts',
  'test/plugin.options.test.ts',
  'test/readme.test.ts',
  'test/receiver.badinput.test.ts',
  'test/receiver.formats.test.ts',
  'test/solver.clients.test.ts',
  'test/sqlite.schema.test.ts',
  'test/sqlite.wal.test.ts',
  'test/stack.override.test.ts',
];

/**
 * Exports of modules that can start a process which start none themselves: a unit-lane file may import these (and
 * types) from such a module, and nothing else from it.
 */
export const PROCESS_FREE_EXPORTS: Readonly<Record<string, readonly string[]>> = {
  'test/support/server.ts': ['parseMetrics', 'scrape'],
  'test/support/stack.ts': ['LIVE_FOR', 'overrideAlertmanagerConfig', 'overridePrometheusConfig', 'overrideRuleFor'],
};

/**
 * The one unit-lane file that imports node:child_process: it calls every starter to prove that the guard makes each
 * throw. The rule holds for the rest of it (test/lanes.test.ts checks it without that import).
 */
export const GUARD_TEST = 'test/lanes.test.ts';

/** The unit lane's setup file, and what it makes throw, with this in the message. */
export const SPAWN_GUARD = 'test/support/noSpawn.ts';
export const STARTERS = ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork'] as const;
export const GUARD_MESSAGE = 'the unit lane starts no process';
