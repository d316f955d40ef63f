import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ProcessRun, runCli } from './server.ts';

/** Runs the real CLI (`node src/server/cli.ts check …`) to completion. */
export function runCheckCli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<ProcessRun> {
  return runCli(['check', ...args], { HOME: process.env.HOME ?? '/nonexistent', ...env }, { timeoutMs });
}

export interface SinkMessage {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: unknown;
}

export interface Sink {
  readonly url: string;
  readonly messages: SinkMessage[];
  /** Status every later POST gets (200 by default). */
  status: number;
  close(): Promise<void>;
}

/** A loopback webhook receiver that records every POST it gets, standing in for Discord, Slack or your endpoint. */
export async function startSink(path = '/hook'): Promise<Sink> {
  const messages: SinkMessage[] = [];
  const sink = { status: 200 } as { status: number };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text: a test then sees the wrong body
      }
      messages.push({ path: req.url ?? '', headers: req.headers, body });
      res.statusCode = sink.status;
      res.end(sink.status === 204 ? undefined : '{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(sink, {
    url: `http://127.0.0.1:${port}${path}`,
    messages,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
}

/** Sends `count` GET requests to `url(i)` with at most `concurrency` in flight; resolves to the statuses. */
export async function burst(count: number, url: (i: number) => string, concurrency = 10): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const res = await fetch(url(i));
      await res.arrayBuffer();
      statuses[i] = res.status;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}
