import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { SolverMetrics } from '../packages/koa/src/metrics/instruments.ts';
import { createPrometheusReader } from '../src/server/telemetry.ts';
import { metricsEntries } from '../src/solver/clients.ts';
import { loadSolversConfig, type SolverConfig, SolverConfigError } from '../src/solver/config.ts';
import { CreateTaskClient } from '../src/solver/createTaskClient.ts';
import { ResPhpClient } from '../src/solver/resPhpClient.ts';
import { type SolverSimulator, startSolverSimulator } from './support/solverSimulator.ts';

/*
 * Both protocol clients against the loopback simulator (the documented stand-in for the unreachable solver APIs),
 * with real SolverMetrics on a MeterProvider read through the server's Prometheus serializer.
 */

const KEY_2C = 'k2c-0123456789abcdef0123456789ab';
const KEY_CS = 'CAP-0123456789ABCDEF0123456789AB';

function config(name: string, protocol: SolverConfig['protocol'], url: string, key: string): SolverConfig {
  return {
    name,
    protocol,
    url,
    key,
    lowBalance: undefined,
    pacing: { pollIntervalMs: 5000, maxPollsPerTask: 20, balanceIntervalMs: 60_000 },
  };
}

let twoCaptcha: SolverSimulator;
let capsolver: SolverSimulator;
let scrape: () => Promise<string>;
let provider: MeterProvider;
let metrics: SolverMetrics;
let resPhp: ResPhpClient;
let createTask: CreateTaskClient;

beforeAll(async () => {
  twoCaptcha = await startSolverSimulator({ flavor: '2captcha', key: KEY_2C, balance: 3.5 });
  capsolver = await startSolverSimulator({ flavor: 'capsolver', key: KEY_CS, balance: 7.25 });
  const reader = createPrometheusReader();
  provider = new MeterProvider({ readers: [reader.exporter] });
  scrape = reader.scrape;
  const configs = [
    config('twocaptcha', 'res.php', twoCaptcha.url, KEY_2C),
    config('capsolver', 'createTask', capsolver.url, KEY_CS),
  ];
  metrics = new SolverMetrics(provider.getMeter('test'), metricsEntries(configs));
  resPhp = new ResPhpClient(configs[0]!, metrics, 500);
  createTask = new CreateTaskClient(configs[1]!, metrics, 500);
});

afterAll(async () => {
  await twoCaptcha.close();
  await capsolver.close();
  await provider.shutdown();
});

const series = async (solver: string, endpoint: string, outcome: string) => {
  const line = (await scrape())
    .split('\n')
    .find(
      (l) =>
        l.startsWith(`${PROM.solverRequestsTotal}{`) &&
        l.includes(`solver="${solver}"`) &&
        l.includes(`endpoint="${endpoint}"`) &&
        l.includes(`outcome="${outcome}"`),
    );
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
};

describe('res.php client', () => {
  it('reads not ready, then the answer through the query adapter, under the app id', async () => {
    twoCaptcha.addTask('71001', { answer: '03AGdBq24-token', readyAt: Date.now() + 200 });
    expect(await resPhp.getResult('71001', 'order-1')).toEqual({ kind: 'not_ready' });
    await new Promise((r) => setTimeout(r, 250));
    // The simulator enforces 5 s between asks for one task: this second ask is over the limit and answered so.
    const early = await resPhp.getResult('71001', 'order-1');
    expect(early).toMatchObject({ kind: 'retry', outcome: 'solver_error', detail: 'ERROR_TOO_MUCH_REQUESTS' });
    expect(twoCaptcha.overLimit.tooFast).toBe(1);
    twoCaptcha.addTask('71002', { answer: '03AGdBq24-other' });
    const ready = await resPhp.getResult('71002', 'order-2');
    expect(ready).toMatchObject({
      kind: 'ready',
      result: { taskId: 'order-2', solverTaskId: '71002', outcome: 'solved', code: '03AGdBq24-other', format: 'query' },
    });
    expect(await series('twocaptcha', 'get_result', 'ok')).toBe(1);
    expect(await series('twocaptcha', 'get_result', 'not_ready')).toBe(1);
  });

  it('stores a task-level error as a failed result and stops on an unknown id', async () => {
    twoCaptcha.addTask('71003', { error: 'ERROR_CAPTCHA_UNSOLVABLE' });
    expect(await resPhp.getResult('71003', 'order-3')).toMatchObject({
      kind: 'ready',
      result: { outcome: 'failed', code: 'ERROR_CAPTCHA_UNSOLVABLE' },
    });
    expect(await resPhp.getResult('nope', 'order-4')).toEqual({ kind: 'gone', code: 'ERROR_WRONG_CAPTCHA_ID' });
  });

  it('reads the balance and manages pingback addresses', async () => {
    expect(await resPhp.getBalance()).toEqual({ kind: 'ok', balance: 3.5 });
    expect(await resPhp.addPingback('https://receiver.example/')).toEqual({ kind: 'ok', answer: 'OK' });
    expect(await resPhp.getPingbacks()).toEqual({ kind: 'ok', answer: ['https://receiver.example/'] });
    expect(await resPhp.delPingback('https://receiver.example/')).toEqual({ kind: 'ok', answer: 'OK' });
    expect(twoCaptcha.pingbacks.size).toBe(0);
    expect(await series('twocaptcha', 'add_pingback', 'ok')).toBe(1);
  });

  it('turns each fault into its closed outcome: timeout, 5xx, garbage', async () => {
    twoCaptcha.fault('timeout', 1);
    expect(await resPhp.getBalance()).toMatchObject({ kind: 'failed', outcome: 'timeout' });
    twoCaptcha.fault('5xx', 1);
    expect(await resPhp.getBalance()).toMatchObject({ kind: 'failed', outcome: 'http_error', detail: 'HTTP 502' });
    twoCaptcha.fault('garbage', 1);
    expect(await resPhp.getBalance()).toMatchObject({ kind: 'failed', outcome: 'bad_response' });
    twoCaptcha.fault('html', 1);
    expect(await resPhp.getResult('71002', 'order-2')).toMatchObject({ kind: 'retry', outcome: 'bad_response' });
    expect(await series('twocaptcha', 'get_balance', 'timeout')).toBe(1);
    expect(await series('twocaptcha', 'get_balance', 'http_error')).toBe(1);
    expect(await series('twocaptcha', 'get_balance', 'bad_response')).toBe(1);
  });

  it('a refused connection is a network_error', async () => {
    const dead = new ResPhpClient(config('twocaptcha', 'res.php', 'http://127.0.0.1:9', KEY_2C), metrics, 500);
    expect(await dead.getBalance()).toMatchObject({ kind: 'failed', outcome: 'network_error' });
  });
});

describe('createTask client', () => {
  it('reads processing, ready (whole solution, through the JSON adapter) and errorId', async () => {
    capsolver.addTask('37223a89-06ed-442c-a0b8-22067b79c5b4', {
      answer: { gRecaptchaResponse: '03AGd-cs', userAgent: 'UA/1' },
      readyAt: Date.now() + 150,
    });
    expect(await createTask.getResult('37223a89-06ed-442c-a0b8-22067b79c5b4', 'app-1')).toEqual({ kind: 'not_ready' });
    await new Promise((r) => setTimeout(r, 200));
    const ready = await createTask.getResult('37223a89-06ed-442c-a0b8-22067b79c5b4', 'app-1');
    expect(ready).toMatchObject({
      kind: 'ready',
      result: {
        taskId: 'app-1',
        solverTaskId: '37223a89-06ed-442c-a0b8-22067b79c5b4',
        code: '03AGd-cs',
        format: 'json',
        solution: { userAgent: 'UA/1' },
      },
    });
    expect(await createTask.getResult('unknown', 'app-2')).toEqual({ kind: 'gone', code: 'ERROR_TASKID_INVALID' });
    capsolver.addTask('t-unsolvable', { error: 'ERROR_CAPTCHA_UNSOLVABLE' });
    expect(await createTask.getResult('t-unsolvable', 'app-3')).toMatchObject({
      kind: 'ready',
      result: { outcome: 'failed', code: 'ERROR_CAPTCHA_UNSOLVABLE' },
    });
    expect(await createTask.getBalance()).toEqual({ kind: 'ok', balance: 7.25 });
    expect(await series('capsolver', 'get_result', 'ok')).toBe(1);
    expect(await series('capsolver', 'get_result', 'solver_error')).toBe(2);
  });

  it('CapSolver loses the result after 120 queries (the simulator counts the 121st as over the limit)', async () => {
    capsolver.addTask('t-many', { readyAt: Date.now() + 3_600_000 });
    for (let i = 0; i < 120; i++) expect((await createTask.getResult('t-many', 'app-4')).kind).toBe('not_ready');
    expect(capsolver.overLimit.tooMany).toBe(0);
    expect(await createTask.getResult('t-many', 'app-4')).toEqual({ kind: 'gone', code: 'ERROR_TASKID_INVALID' });
    expect(capsolver.overLimit.tooMany).toBe(1);
  });

  it('a wrong key is a solver_error; the key is in no answer', async () => {
    const wrong = new CreateTaskClient(config('capsolver', 'createTask', capsolver.url, 'wrong-key-xyz'), metrics, 500);
    const answer = await wrong.getBalance();
    expect(answer).toEqual({ kind: 'failed', outcome: 'solver_error', detail: 'ERROR_KEY_DOES_NOT_EXIST' });
    expect(JSON.stringify(answer)).not.toContain('wrong-key-xyz');
  });
});

describe('solver configuration', () => {
  const base = {
    SOLVER_TWO_CAPTCHA_PROTOCOL: 'res.php',
    SOLVER_TWO_CAPTCHA_URL: 'https://2captcha.com',
    SOLVER_TWO_CAPTCHA_KEY: KEY_2C,
  };

  it('parses named solvers, lowercases names, applies documented defaults', () => {
    const c = loadSolversConfig(
      {
        ...base,
        SOLVER_CS_PROTOCOL: 'createTask',
        SOLVER_CS_URL: 'https://api.capsolver.com/',
        SOLVER_CS_KEY_FILE: '/k',
        SOLVER_CS_LOW_BALANCE: '2',
      },
      () => `${KEY_CS}\n`,
    );
    expect(c.solvers.map((s) => [s.name, s.protocol, s.url, s.lowBalance])).toEqual([
      ['cs', 'createTask', 'https://api.capsolver.com', 2],
      ['two_captcha', 'res.php', 'https://2captcha.com', undefined],
    ]);
    expect(c.solvers[0]!.key).toBe(KEY_CS);
    expect(c.solvers[0]!.pacing).toEqual({ pollIntervalMs: 3000, maxPollsPerTask: 120, balanceIntervalMs: 60_000 });
    expect(c.solvers[1]!.pacing).toEqual({ pollIntervalMs: 5000, maxPollsPerTask: 20, balanceIntervalMs: 60_000 });
    expect(c.recovery.recoveryAfterSeconds).toBe(60);
  });

  it('names every bad variable and never shows a key', () => {
    const bad = {
      SOLVER_A_PROTOCOL: 'soap',
      SOLVER_A_URL: 'https://x.example/res.php',
      SOLVER_A_KEY: 'secret with space',
      SOLVER_B_PROTOCOL: 'res.php',
      SOLVER_B_URL: 'https://user:pw@x.example',
      SOLVER_B_KEY: 'k',
      SOLVER_B_POLL_INTERVAL: '1',
      SOLVER_C_PROTOCOL: 'createTask',
      SOLVER_C_URL: 'https://c.example',
      SOLVER_C_MAX_POLLS: '500',
      SOLVER_C_BALANCE_INTERVAL: '5',
      'SOLVER_D-X_URL': 'https://d.example',
      RECOVERY_AFTER: '0',
    };
    let error: SolverConfigError | undefined;
    try {
      loadSolversConfig(bad);
    } catch (e) {
      error = e as SolverConfigError;
    }
    expect(error).toBeInstanceOf(SolverConfigError);
    const text = error!.message;
    for (const v of [
      'SOLVER_A_PROTOCOL',
      'SOLVER_A_URL',
      'SOLVER_A_KEY',
      'SOLVER_B_URL',
      'SOLVER_B_POLL_INTERVAL',
      'SOLVER_C_KEY or SOLVER_C_KEY_FILE',
      'SOLVER_C_MAX_POLLS',
      'SOLVER_C_BALANCE_INTERVAL',
      'SOLVER_D-X_URL',
      'RECOVERY_AFTER',
    ]) {
      expect(text).toContain(v);
    }
    expect(text).not.toContain('secret with space');
    expect(text).not.toContain('pw@');
  });

  it('bounds the number of solvers (names label metrics)', () => {
    const env: Record<string, string> = {};
    for (let i = 0; i < 17; i++)
      Object.assign(env, {
        [`SOLVER_S${i}_PROTOCOL`]: 'res.php',
        [`SOLVER_S${i}_URL`]: 'https://x.example',
        [`SOLVER_S${i}_KEY`]: 'k',
      });
    expect(() => loadSolversConfig(env)).toThrow(/at most 16 solvers/);
  });
});
