/**
 * Solver API keys (SOLVER_<NAME>_KEY, _KEY_FILE) never appear in logs, /metrics, /tasks, error messages or --help,
 * with the real server (the CLI as a child process, LOG_LEVEL=trace) talking to the loopback solver simulator; and
 * the balance gauge it serves equals the simulator's balance, with each solver's low-balance threshold beside it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROM } from '../packages/koa/src/metrics/contract.ts';
import { waitFor } from './support/ports.ts';
import { parseMetrics, type RunningServer, runCli, scrape, startServer } from './support/server.ts';
import { type SolverSimulator, startSolverSimulator } from './support/solverSimulator.ts';

const KEY_2C = `2c${randomBytes(15).toString('hex')}`;
const KEY_CS = `CAP-${randomBytes(16).toString('hex').toUpperCase()}`;
const KEY_WRONG = `wrong${randomBytes(12).toString('hex')}`;
const KEYS = [KEY_2C, KEY_CS, KEY_WRONG];

let twoCaptcha: SolverSimulator;
let capsolver: SolverSimulator;
let server: RunningServer;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  twoCaptcha = await startSolverSimulator({ flavor: '2captcha', key: KEY_2C, balance: 12.5 });
  capsolver = await startSolverSimulator({ flavor: 'capsolver', key: KEY_CS, balance: 3.25 });
  dir = mkdtempSync(join(tmpdir(), 'ccm-solver-secrets-'));
  writeFileSync(join(dir, 'capsolver.key'), `${KEY_CS}\n`, { mode: 0o600 });
  env = {
    SOLVER_TWOC_PROTOCOL: 'res.php',
    SOLVER_TWOC_URL: twoCaptcha.url,
    SOLVER_TWOC_KEY: KEY_2C,
    SOLVER_CS_PROTOCOL: 'createTask',
    SOLVER_CS_URL: capsolver.url,
    SOLVER_CS_KEY_FILE: join(dir, 'capsolver.key'),
    SOLVER_CS_LOW_BALANCE: '3.25',
    // A solver whose key the simulator refuses: its failed getBalance is logged.
    SOLVER_BAD_PROTOCOL: 'res.php',
    SOLVER_BAD_URL: twoCaptcha.url,
    SOLVER_BAD_KEY: KEY_WRONG,
  };
  server = await startServer({ ...env, LOG_LEVEL: 'trace' });
});

afterAll(async () => {
  await server?.stop();
  await twoCaptcha?.close();
  await capsolver?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The CLI run asynchronously (runCli): the simulator answering it lives in this process. */
const cli = (args: string[]) => runCli(args, env);

const noKey = (text: string, where: string) => {
  for (const key of KEYS) expect(text.includes(key), `${where} contains an API key`).toBe(false);
};

describe('solver balance on /metrics', () => {
  it('equals the simulator balance at start-up, with the threshold for the solver that has one', async () => {
    const m = parseMetrics(await scrape(server));
    expect(m.get(`${PROM.solverBalance}{solver="twoc"}`)).toBe(12.5);
    expect(m.get(`${PROM.solverBalance}{solver="cs"}`)).toBe(3.25);
    expect(m.get(`${PROM.solverLowBalanceThreshold}{solver="cs"}`)).toBe(3.25);
    expect(m.has(`${PROM.solverLowBalanceThreshold}{solver="twoc"}`)).toBe(false);
    // The refused key: no balance, and its request counted as a solver error.
    expect(m.has(`${PROM.solverBalance}{solver="bad"}`)).toBe(false);
    expect(m.get(`${PROM.solverRequestsTotal}{solver="bad",endpoint="get_balance",outcome="solver_error"}`)).toBe(1);
    expect(m.get(`${PROM.solverRequestsTotal}{solver="cs",endpoint="get_balance",outcome="ok"}`)).toBe(1);
  });
});

describe('API keys stay secret', () => {
  it('appear nowhere in /metrics, /tasks or the logs (trace level), while the logs do report the failure', async () => {
    noKey(await scrape(server), '/metrics');
    await fetch(`${server.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'order-1' }),
    });
    noKey(await (await fetch(`${server.managementUrl}/tasks/order-1`)).text(), '/tasks/:id');
    noKey(await (await fetch(`${server.managementUrl}/tasks?state=pending`)).text(), '/tasks');
    await waitFor(() => server.logs().includes('getBalance failed'), 5000, 'the failed getBalance log line');
    expect(server.logs()).toContain('ERROR_KEY_DOES_NOT_EXIST');
    noKey(server.logs(), 'logs');
  });

  it('appear nowhere in --help, even with every key set', async () => {
    const help = await runCli(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('SOLVER_<NAME>_KEY_FILE');
    noKey(help.stdout + help.stderr, '--help');
  });

  it('appear nowhere in a configuration error, which names the variable', async () => {
    const bad = await runCli([], {
      STORE_URL: 'memory:',
      PORT: '0',
      MANAGEMENT_PORT: '0',
      SOLVER_X_PROTOCOL: 'res.php',
      SOLVER_X_URL: `https://user:${KEY_2C}@x.example`,
      SOLVER_X_KEY: `${KEY_CS} trailing`,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SOLVER_X_URL');
    expect(bad.stderr).toContain('SOLVER_X_KEY');
    noKey(bad.stdout + bad.stderr, 'configuration error');
  });

  it('solver register-pingback prints what the solver answered, never the key; a refusal neither', async () => {
    const ok = await cli(['solver', 'register-pingback', 'twoc', 'https://receiver.example/']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('twoc answered: "OK"');
    expect(twoCaptcha.pingbacks.has('https://receiver.example/')).toBe(true);
    const list = await cli(['solver', 'list', 'twoc']);
    expect(list.stdout).toContain('["https://receiver.example/"]');
    const refused = await cli(['solver', 'register-pingback', 'bad', 'https://receiver.example/']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('ERROR_KEY_DOES_NOT_EXIST');
    const createTask = await cli(['solver', 'list', 'cs']);
    expect(createTask.code).toBe(2);
    const del = await cli(['solver', 'delete', 'twoc', 'all']);
    expect(del.code).toBe(0);
    expect(twoCaptcha.pingbacks.size).toBe(0);
    for (const r of [ok, list, refused, createTask, del]) noKey(r.stdout + r.stderr, 'solver command output');
  });
});
