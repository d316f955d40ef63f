import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, redactedConfig } from '../src/server/config.ts';
import { runCli, SERVE_ENV, startServer } from './support/server.ts';

const run = (args: string[], env: Record<string, string> = {}) =>
  runCli(args, { ...SERVE_ENV, ...env }, { timeoutMs: 15_000 });

describe('configuration', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({})).toMatchObject({
      PORT: 3000,
      HOST: '0.0.0.0',
      MANAGEMENT_PORT: 9464,
      STORE_URL: 'sqlite:./data/callbacks.db',
      DELIVERY_TIMEOUT: 300,
      LOG_LEVEL: 'info',
    });
  });

  it('accepts any DELIVERY_TIMEOUT of at least 1 second', () => {
    expect(loadConfig({ DELIVERY_TIMEOUT: '1' }).DELIVERY_TIMEOUT).toBe(1);
    expect(loadConfig({ DELIVERY_TIMEOUT: '2.5' }).DELIVERY_TIMEOUT).toBe(2.5);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['MANAGEMENT_PORT', '-1'],
    ['DELIVERY_TIMEOUT', '0'],
    ['DELIVERY_TIMEOUT', 'soon'],
    ['STORE_URL', 'postgres://db'],
    ['LOG_LEVEL', 'loud'],
    ['CALLBACK_SECRET', 'short'],
    ['CALLBACK_SECRET', 'has/slash-and-long-enough'],
    ['API_TOKEN', 'tiny'],
    ['HEADERS_TIMEOUT_MS', '0'],
    ['CALLBACK_PATH', 'no-leading-slash'],
  ])('%s=%s is refused with a message naming the variable', (name, value) => {
    let caught: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).problems.some((p) => p.startsWith(`${name}:`))).toBe(true);
  });

  it('never shows secrets when it names a bad secret, nor in the logged configuration', () => {
    try {
      loadConfig({ CALLBACK_SECRET: 'tooshort' });
    } catch (error) {
      expect((error as Error).message).not.toContain('tooshort');
    }
    const shown = JSON.stringify(
      redactedConfig(
        loadConfig({ CALLBACK_SECRET: 'a'.repeat(20), API_TOKEN: 'b'.repeat(20), STORE_URL: 'redis://:pw@r:6379/0' }),
      ),
    );
    expect(shown).not.toContain('a'.repeat(20));
    expect(shown).not.toContain('b'.repeat(20));
    expect(shown).not.toContain(':pw@');
  });
});

describe('the CLI', () => {
  it('--help lists every variable and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const name of [
      'PORT',
      'MANAGEMENT_PORT',
      'STORE_URL',
      'DELIVERY_TIMEOUT',
      'CALLBACK_SECRET',
      'API_TOKEN',
      'LOG_LEVEL',
    ]) {
      expect(r.stdout).toContain(name);
    }
  });

  it('exits non-zero at start-up with a message naming the bad variable', async () => {
    const r = await run([], { DELIVERY_TIMEOUT: 'never' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('DELIVERY_TIMEOUT');
  });

  it('refuses an unknown command', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command');
  });

  it('shuts down gracefully on SIGTERM: an in-flight long-poll is answered, exit code 0', async () => {
    const server = await startServer({ STORE_URL: 'memory:' });
    await fetch(`${server.managementUrl}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'g1' }),
    });
    const inFlight = fetch(`${server.managementUrl}/tasks/g1?wait=60`);
    await new Promise((r) => setTimeout(r, 200));
    const exit = server.stop();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { state: string }).state).toBe('pending');
    expect(await exit).toBe(0);
    expect(server.logs()).toContain('"msg":"stopped"');
  });
});
