import { metrics } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { CallbackMonitor, PROM } from '../packages/koa/src/index.ts';
import { listen } from './support/http.ts';
import { prometheusMeter } from './support/receiver.ts';

/*
 * The metrics API has no proxy provider: a meter taken from the global before an SDK registers is a no-op for good.
 * The monitor follows the global provider instead, and `setMeterProvider` binds it to one explicitly. Each case reads
 * the exposition text a real PrometheusExporter would serve.
 */

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  metrics.disable();
});

function sdk() {
  const meter = prometheusMeter();
  cleanups.push(meter.close);
  return { provider: meter.provider, text: meter.scrape };
}

async function serve(monitor: CallbackMonitor): Promise<string> {
  const listening = await listen(monitor.requestListener());
  cleanups.push(listening.close);
  cleanups.push(() => monitor.close());
  return listening.url;
}

const solvedLine = (text: string) =>
  text
    .split('\n')
    .find(
      (l) => l.startsWith(`${PROM.callbacksTotal}{`) && l.includes('outcome="solved"') && l.includes('format="query"'),
    );

describe('CallbackMonitor and the MeterProvider', () => {
  it('created before the app registers its SDK, it reports to that SDK from the next request on', async () => {
    const monitor = new CallbackMonitor();
    const base = await serve(monitor);
    // A callback before any SDK: counted in the monitor's totals, reported once a provider exists.
    expect((await fetch(`${base}/callback?id=before-sdk&code=tok`)).status).toBe(200);
    const { provider, text } = sdk();
    metrics.setGlobalMeterProvider(provider);
    expect(await text()).not.toContain(PROM.callbacksTotal);
    expect((await fetch(`${base}/callback?id=after-sdk&code=tok`)).status).toBe(200);
    expect(solvedLine(await text())).toMatch(/ 2$/);
  });

  it('setMeterProvider moves the instruments to the given provider, totals kept, and stops following the global', async () => {
    const global = sdk();
    metrics.setGlobalMeterProvider(global.provider);
    const monitor = new CallbackMonitor();
    const base = await serve(monitor);
    expect((await fetch(`${base}/callback?id=a&code=tok`)).status).toBe(200);
    expect(solvedLine(await global.text())).toMatch(/ 1$/);
    const own = sdk();
    monitor.setMeterProvider(own.provider);
    expect((await fetch(`${base}/callback?id=b&code=tok`)).status).toBe(200);
    expect(solvedLine(await own.text())).toMatch(/ 2$/);
    // The previous provider's callbacks were removed: it keeps the last value it read (cumulative), never the new one.
    expect(solvedLine(await global.text())).toMatch(/ 1$/);
  });

  it('a meterProvider option is used instead of the global one', async () => {
    const global = sdk();
    metrics.setGlobalMeterProvider(global.provider);
    const own = sdk();
    const monitor = new CallbackMonitor({ meterProvider: own.provider });
    const base = await serve(monitor);
    expect((await fetch(`${base}/callback?id=c&code=tok`)).status).toBe(200);
    expect(solvedLine(await own.text())).toMatch(/ 1$/);
    expect(solvedLine(await global.text())).toBeUndefined();
  });

  it('metrics: false records nothing anywhere, even after setMeterProvider', async () => {
    const own = sdk();
    const monitor = new CallbackMonitor({ metrics: false });
    monitor.setMeterProvider(own.provider);
    const base = await serve(monitor);
    expect((await fetch(`${base}/callback?id=d&code=tok`)).status).toBe(200);
    expect(await own.text()).not.toContain(PROM.callbacksTotal);
  });
});
