/**
 * The tests' HTTP client, one for every suite: `send` makes one request with `node:http` (any method, raw bytes as the
 * body, any content type; fetch refuses some of these) and resolves to status, headers and the body read to its end;
 * `get`, `postForm` and `postJson` are its common cases. `formPost` / `jsonPost` are the same two bodies as fetch
 * options, for tests that use fetch. `listen` serves a request listener on an ephemeral loopback port (the in-process
 * receiver of test/support/receiver.ts). No retries and no checks of its own: what the server answers is the result.
 */
import { createServer, type IncomingHttpHeaders, type RequestListener, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export const FORM_TYPE = 'application/x-www-form-urlencoded';
export const JSON_TYPE = 'application/json';

export interface HttpReply {
  readonly status: number;
  /** Response headers, names in lower case (as node:http gives them). */
  readonly headers: IncomingHttpHeaders;
  /** The whole body, as UTF-8 text. */
  readonly text: string;
  /** The body parsed as JSON; throws when it is not JSON. */
  json<T = unknown>(): T;
}

export interface SendOptions {
  /** Default GET. */
  readonly method?: string;
  /** Sent as the content-type header (unset: none is sent). */
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as it is; unset: no body. */
  readonly body?: Buffer | string;
}

/** One request with node:http and its default (keep-alive) agent; rejects only when the request itself fails. */
export function send(url: string, options: SendOptions = {}): Promise<HttpReply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.contentType !== undefined) headers['content-type'] = options.contentType;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          json: <T>() => JSON.parse(text) as T,
        });
      });
    });
    req.on('error', reject);
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

export const get = (url: string, headers?: Readonly<Record<string, string>>): Promise<HttpReply> =>
  send(url, headers ? { headers } : {});

export const postForm = (url: string, body: string): Promise<HttpReply> =>
  send(url, { method: 'POST', contentType: FORM_TYPE, body });

export const postJson = (url: string, value: unknown): Promise<HttpReply> =>
  send(url, { method: 'POST', contentType: JSON_TYPE, body: JSON.stringify(value) });

/** Request options for the two body formats solvers POST, for the tests that send callbacks with fetch. */
export const formPost = (body: string): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': FORM_TYPE },
  body,
});

export const jsonPost = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': JSON_TYPE },
  body: JSON.stringify(body),
});

export interface Listening {
  readonly server: Server;
  readonly port: number;
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops listening and ends every connection, kept-alive ones included. */
  close(): Promise<void>;
}

/** Serves `listener` from a plain node:http server (default options) on an ephemeral 127.0.0.1 port. */
export function listen(listener: RequestListener): Promise<Listening> {
  const server = createServer(listener);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      const { port } = server.address() as AddressInfo;
      resolve({
        server,
        port,
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
