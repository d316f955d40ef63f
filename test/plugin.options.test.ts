import { describe, expect, it } from 'vitest';
import { CallbackMonitor, type CallbackMonitorOptions, MemoryTaskStore } from '../packages/koa/src/index.ts';

/* Options are checked in the constructor: every mistake is a TypeError that names the option. */

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

const bad: Array<[string, unknown, RegExp]> = [
  ['prefix', 'callback', /option "prefix" must be a path/],
  ['prefix', '/a//b', /option "prefix"/],
  ['secret', 'has space', /option "secret"/],
  ['secret', '', /option "secret"/],
  ['deliveryTimeoutSeconds', 0, /option "deliveryTimeoutSeconds" must be an integer from 1 to 604800/],
  ['deliveryTimeoutSeconds', 604801, /option "deliveryTimeoutSeconds"/],
  ['deliveryTimeoutSeconds', '300', /option "deliveryTimeoutSeconds"/],
  ['sweepIntervalMs', 1.5, /option "sweepIntervalMs"/],
  ['retentionSeconds', 10, /option "retentionSeconds"/],
  ['maxBodyBytes', -1, /option "maxBodyBytes"/],
  ['maxQueryBytes', Number.NaN, /option "maxQueryBytes"/],
  ['healthPath', 'health', /option "healthPath" .*or null/],
  ['onResult', 'not a function', /option "onResult" must be a function/],
  ['onError', {}, /option "onError" must be a function/],
  ['store', {}, /option "store" must be an object with register\(\)/],
  ['meterProvider', {}, /option "meterProvider" must be an object with getMeter\(\)/],
  ['metrics', 'yes', /option "metrics" must be true or false/],
  ['deliveryTimeout', 300, /unknown option "deliveryTimeout" \(known: .*deliveryTimeoutSeconds/],
  ['forward', 'http://app', /option "forward" must be an object/],
  ['forward', { secret: SECRET }, /option "forward.url" is required/],
  ['forward', { url: 'http://app.test/hook' }, /option "forward.secret" is required/],
  ['forward', { url: 'ftp://app.test/hook', secret: SECRET }, /option "forward.url" must be an http: or https: URL/],
  ['forward', { url: 'http://app.test/hook', secret: 'whsec_c2hvcnQ=' }, /option "forward.secret"/],
  ['forward', { url: 'http://app.test/hook', secret: SECRET, events: ['solved'] }, /option "forward.events"/],
  ['forward', { url: 'http://app.test/hook', secret: SECRET, concurrency: 0 }, /option "forward.concurrency"/],
  ['forward', { url: 'http://app.test/hook', secret: SECRET, retryMinMs: 10, retryMaxMs: 5 }, /forward.retryMinMs/],
  ['forward', { url: 'http://app.test/hook', secret: SECRET, retries: 3 }, /unknown option "forward.retries"/],
];

describe('CallbackMonitorOptions validation', () => {
  it.each(bad)('%s = %j is refused with the option named', (name, value, message) => {
    const options = { [name]: value } as unknown as CallbackMonitorOptions;
    expect(() => new CallbackMonitor(options)).toThrow(TypeError);
    expect(() => new CallbackMonitor(options)).toThrow(message);
  });

  it('refuses meter and meterProvider together', () => {
    const provider = { getMeter: () => ({}) as never };
    const meter = { createHistogram() {}, createObservableCounter() {}, createObservableGauge() {} } as never;
    expect(() => new CallbackMonitor({ meter, meterProvider: provider })).toThrow(/"meter" or option "meterProvider"/);
  });

  it('accepts every documented option with valid values', async () => {
    const monitor = new CallbackMonitor({
      store: new MemoryTaskStore(),
      metrics: false,
      prefix: '/hooks/captcha',
      secret: 's3cret-path_token',
      deliveryTimeoutSeconds: 604800,
      sweepIntervalMs: 250,
      retentionSeconds: 60,
      maxBodyBytes: 1024,
      maxQueryBytes: 256,
      healthPath: null,
      healthzPath: '/ready',
      onResult: () => {},
      onError: () => {},
      forward: { url: 'https://app.test/hook', secret: SECRET, events: ['delivered', 'missed'], concurrency: 4 },
      now: Date.now,
    });
    expect(monitor.forwarding).toBe(true);
    await monitor.close();
    expect(() => new CallbackMonitor()).not.toThrow();
    expect(() => new CallbackMonitor({ prefix: undefined })).not.toThrow();
  });
});
