/**
 * `npm run bench` (`node bench/run.ts [--quick] [--out FILE] [--json FILE] [--only a,b] [--no-scale] [--rounds N]
 * [--duration S]`); `--report FILE` renders a report saved with `--json` again without running anything.
 *
 * Throughput: every peer runs as its own child process on loopback, side by side in one run; the load generator
 * (autocannon, programmatic API) is a separate process too, and every request carries a fresh task id. Peers are
 * measured in interleaved rounds (the order rotates each round) and only the peer under load runs: the others are
 * SIGSTOPped, so an idle receiver's sweeper never steals CPU from a neighbour. Numbers are medians over rounds and
 * every comparison is a ratio within this run: absolute numbers on a shared 2-core machine mean little.
 *
 * Scale: two receivers on SQLite, one with 10 pending tasks and one with 1,000,000 (registered through
 * `POST /tasks`), have `/metrics` and `/health/callbacks` timed alternately; RSS at 1 M pending; and the longest event-loop
 * stall while DeliveryTracker.sweep() expires 100,000 overdue tasks.
 *
 * Full mode writes bench/RESULTS.md (or --out). --quick runs seconds per peer with small scale numbers and applies
 * no thresholds (the test suite runs it so the harness never rots); it writes files only when told to.
 *
 * The parts: bench/config.ts (flags, parameters, peers), bench/suites/ (throughput, scale, sweep), bench/lib/
 * (child processes, forwarding, even load), bench/report/ (types, targets, markdown).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { args, BENCH_DIR, forwardBench, log, PARAMS, QUICK, tmp } from './config.ts';
import { forwardLatency } from './lib/forwarding.ts';
import { ROOT } from './lib/proc.ts';
import { markdown } from './report/markdown.ts';
import type { BenchReport } from './report/types.ts';
import { scale } from './suites/scale.ts';
import { sweep } from './suites/sweep.ts';
import { throughput } from './suites/throughput.ts';

function machine(): BenchReport['machine'] {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {}
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {}
  const argv = process.argv.slice(2).join(' ');
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${argv ? ` -- ${argv}` : ''}`
      : `node bench/run.ts${argv ? ` ${argv}` : ''}`;
  return { nproc, cpu, node: process.version, date: new Date().toISOString(), command };
}

async function measure(): Promise<BenchReport> {
  // The CLI peers run dist/, as `npm start` does: compile it from the current sources first.
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  for (const project of ['packages/koa/tsconfig.build.json', 'tsconfig.build.json']) {
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, project)], { stdio: 'inherit' });
  }
  const report: BenchReport = {
    quick: QUICK,
    params: PARAMS,
    machine: machine(),
    peers: [],
    scale: {},
    sweep: { runs: [] },
  };
  try {
    report.peers = await throughput();
    if (!args['no-forward-latency']) report.forward = await forwardLatency(forwardBench);
    if (!args['no-scale']) {
      report.scale = await scale();
      report.sweep = await sweep();
    } else {
      report.scale = { small: PARAMS.scaleSmall, large: PARAMS.scaleLarge, error: 'skipped (--no-scale)' };
      report.sweep = { runs: [], error: 'skipped (--no-scale)' };
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return report;
}

async function main(): Promise<void> {
  // --report FILE: render a report saved with --json again (after a change to the report itself), running nothing.
  const report: BenchReport = args.report
    ? (JSON.parse(readFileSync(args.report, 'utf8')) as BenchReport)
    : await measure();
  const md = markdown(report);
  process.stdout.write(`\n${md}\n`);
  const out = args.out ?? (QUICK ? undefined : join(BENCH_DIR, 'RESULTS.md'));
  if (out) {
    writeFileSync(out, md);
    log(`wrote ${out}`);
  }
  if (args.json && !args.report) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
}

await main();
