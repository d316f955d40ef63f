/** The report a run produces (`--json` writes it, `--report` renders it again) and its parts. */
import type { Params } from '../config.ts';
import type { ForwardDrain, ForwardLatencySummary } from '../lib/forwarding.ts';
import type { LoadResult } from '../loadgen.ts';

/** One measured run: the load generator's numbers plus the server's CPU time per request it answered. */
export interface Run extends LoadResult {
  /** Server process user + system CPU per answered request, µs: robust against CPU stolen by other work. */
  cpuUsPerRequest: number;
  /** The same by thread name (the event loop `MainThread`, the forward worker, V8's and libuv's helpers). */
  threadCpuUsPerRequest?: Record<string, number>;
}

export interface PeerSummary {
  key: string;
  label: string;
  error?: string;
  runs: Run[];
  cpuUs?: number;
  rps?: number;
  rpsMin?: number;
  rpsMax?: number;
  p50?: number;
  p99?: number;
  non2xx?: number;
  errors?: number;
  delivery?: { delivered: number; pending: number; total_received: number };
  /** Forwarding peers: forwards during the rounds, the backlog they left and the catch-up after them. */
  forwarding?: ForwardDrain;
}

/** One endpoint on one instance: latency at one connection, and server CPU per request (the cost proper). */
export interface EndpointCost {
  p50: number;
  mean: number;
  rps: number;
  cpuUs: number;
}

export interface ScaleSummary {
  error?: string;
  small?: number;
  large?: number;
  /** How long registering the large instance's tasks through POST /tasks took. */
  registerMs?: number;
  metricsSmall?: EndpointCost;
  metricsLarge?: EndpointCost;
  healthSmall?: EndpointCost;
  healthLarge?: EndpointCost;
  /** RSS in steady state: after registration, 1 s of callbacks, one scrape and one health read. */
  rssLargeSteady?: number;
  rssSmallSteady?: number;
  /** RSS after the endpoint latency runs (thousands of scrapes a second, which grow V8's heap). */
  rssLarge?: number;
  rssPeakLarge?: number;
  rssSmall?: number;
}

export interface SweepSummary {
  error?: string;
  runs: Array<{
    tasks: number;
    moved: number;
    sweepMs: number;
    maxStallMs: number;
    p99StallMs: number;
    maxTickGapMs: number;
    largestRegisterMs: number;
  }>;
  memoryRun?: { maxStallMs: number; sweepMs: number };
}

export interface BenchReport {
  quick: boolean;
  params: Params;
  machine: { nproc: number; cpu: string; node: string; date: string; command: string };
  peers: PeerSummary[];
  scale: ScaleSummary;
  sweep: SweepSummary;
  forward?: ForwardLatencySummary;
}
