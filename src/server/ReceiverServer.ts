import { createServer, type RequestListener, type Server, STATUS_CODES } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { CallbackMonitor } from '@captcha-callback-monitor/koa';
import type { ForwardEvent, ForwarderOptions, TaskStore } from '@captcha-callback-monitor/koa/internal';
import type { Meter } from '@opentelemetry/api';
import Koa from 'koa';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { type TaskRecovery, taskApi } from './taskApi.ts';
import { PROMETHEUS_CONTENT_TYPE } from './telemetry.ts';

export interface ReceiverServerDeps {
  readonly config: Config;
  readonly store: TaskStore;
  readonly meter: Meter;
  /** Renders the Prometheus exposition text. */
  /** The Prometheus exposition for /metrics; absent when OTEL_METRICS_EXPORTER leaves Prometheus out (then a 404). */
  readonly scrape?: () => Promise<string>;
  readonly logger: Logger;
  /**
   * Recovery of missed results by asking the solvers (configured solvers only): made for this server's monitor, so
   * a recovered result goes through the same tracker as a callback; `POST /tasks` items with `solver` are watched.
   */
  readonly recovery?: (monitor: CallbackMonitor) => TaskRecovery;
}

/** Turns an unexpected error into a JSON 500/503 instead of Koa's default, and logs it without request details. */
function jsonErrors(logger: Logger): Koa.Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.body = { error: 'not_found', reason: 'no such route' };
        ctx.status = 404; // setting a body makes Koa default the status to 200
      }
    } catch (error) {
      logger.error({ err: error, route: ctx.routerPath ?? 'unmatched' }, 'request failed');
      ctx.status = 503;
      ctx.body = { error: 'unavailable', reason: 'the request could not be served' };
    }
  };
}

/**
 * How long a socket the server answered an error on (clientError: 400, 408, 431) stays open so the client can read
 * that answer; then it is destroyed, whether or not the client reads or keeps sending. A graceful `end()` alone only
 * half-closes: after a 408 the socket then lived for as long as the client kept sending.
 */
export const CLOSE_GRACE_MS = 500;

const closing = new WeakSet<Duplex>();

/** Destroys `socket` after CLOSE_GRACE_MS unless it closes first (once per socket). */
function destroyAfterGrace(socket: Duplex): void {
  if (socket.destroyed || closing.has(socket)) return;
  closing.add(socket);
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** The forwarder's settings from the FORWARD_* variables; its events are logged without the URL or any payload. */
function forwarderOptions(config: Config, url: string, secret: string, logger: Logger): ForwarderOptions {
  return {
    url,
    secret,
    events: config.FORWARD_EVENTS.split(',') as ForwardEvent[],
    timeoutMs: config.FORWARD_TIMEOUT_MS,
    maxAgeMs: config.FORWARD_MAX_AGE * 1000,
    concurrency: config.FORWARD_CONCURRENCY,
    retryMinMs: config.FORWARD_RETRY_MIN_MS,
    retryMaxMs: config.FORWARD_RETRY_MAX_MS,
    // Off the callback event loop: signing, the request and its answer run on a worker thread; the store's
    // claims and settlements stay on this thread (callbacks first: see ForwarderOptions.pace).
    worker: config.FORWARD_THREAD === 'worker',
    onEvent: (event) => {
      if (event.kind === 'dead_letter') {
        logger.warn(
          { task: event.taskId, event: `task.${event.event}`, attempts: event.attempts },
          'forward dead-lettered after FORWARD_MAX_AGE',
        );
      } else if (event.kind === 'worker_exit') {
        logger.error(
          { code: event.code, error: event.error, attempts: event.attempts, restart_in_ms: event.restartInMs },
          'forward worker thread exited; its attempts will be retried, restarting it',
        );
      } else {
        const e = event.error;
        const detail = e instanceof Error ? { type: e.name, message: e.message } : { type: typeof e };
        logger.warn({ where: 'forward', error: detail }, 'forward store call failed');
      }
    },
  };
}

/**
 * The standalone receiver: a public listener (callbacks and health only) and a management listener (`/metrics` and
 * the task API), both plain `node:http` servers so the slow-client timeouts can be set.
 */
export class ReceiverServer {
  readonly monitor: CallbackMonitor;
  readonly publicServer: Server;
  readonly managementServer: Server;
  readonly #deps: ReceiverServerDeps;
  #stopping = false;

  constructor(deps: ReceiverServerDeps) {
    this.#deps = deps;
    const { config, logger } = deps;
    this.monitor = new CallbackMonitor({
      store: deps.store,
      meter: deps.meter,
      prefix: config.CALLBACK_PATH,
      deliveryTimeoutSeconds: config.DELIVERY_TIMEOUT,
      retentionSeconds: config.RETENTION,
      ...(config.CALLBACK_SECRET ? { secret: config.CALLBACK_SECRET } : {}),
      ...(config.FORWARD_URL && config.FORWARD_SECRET
        ? { forward: forwarderOptions(config, config.FORWARD_URL, config.FORWARD_SECRET, logger) }
        : {}),
      onError: (error, where) => {
        // Only name and message: a stack or a whole error object could carry request data. Not under `err`, whose
        // pino serializer expects an Error and would replace the name with "Object".
        const detail = error instanceof Error ? { type: error.name, message: error.message } : { type: typeof error };
        logger.warn({ where, error: detail }, where === 'onResult' ? 'result hook failed' : `${where} failed`);
      },
    });

    // While stopping, every answer closes its connection, so shutdown does not wait out keep-alive timeouts.
    const closeWhenStopping: Koa.Middleware = async (ctx, next) => {
      if (this.#stopping) ctx.set('Connection', 'close');
      await next();
      if (this.#stopping) ctx.set('Connection', 'close');
    };

    // The public listener serves only the monitor's routes, straight from node:http: no framework runs per callback.
    // `Connection: close` while stopping comes from the monitor, which is closed as stop() begins.
    this.publicServer = this.#httpServer(this.monitor.requestListener(), true);

    const managementApp = new Koa();
    managementApp.silent = true;
    managementApp.use(closeWhenStopping);
    managementApp.use(jsonErrors(logger));
    managementApp.use(async (ctx, next) => {
      if (ctx.path !== '/metrics') return next();
      if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
        ctx.status = 405;
        ctx.set('Allow', 'GET, HEAD');
        return;
      }
      if (!deps.scrape) {
        ctx.status = 404;
        ctx.body = {
          error: 'not_found',
          reason: 'the Prometheus endpoint is off: OTEL_METRICS_EXPORTER does not include prometheus',
        };
        return;
      }
      ctx.type = PROMETHEUS_CONTENT_TYPE;
      ctx.body = await deps.scrape();
    });
    const tasks = taskApi(this.monitor, config.API_TOKEN, deps.recovery?.(this.monitor));
    managementApp.use(tasks.routes());
    managementApp.use(tasks.allowedMethods());
    this.managementServer = this.#httpServer(managementApp.callback(), false);
  }

  /**
   * `cutStalledReaders` is off for the management listener, whose `?wait=` long-polls are idle by design.
   */
  #httpServer(listener: RequestListener, cutStalledReaders: boolean): Server {
    const c = this.#deps.config;
    const server = createServer(
      {
        headersTimeout: c.HEADERS_TIMEOUT_MS,
        requestTimeout: c.REQUEST_TIMEOUT_MS,
        keepAliveTimeout: c.KEEP_ALIVE_TIMEOUT_MS,
        // Node checks the two timeouts above only this often (default 30 s); a slowloris client would outlive them.
        // A quarter second keeps a timed-out request's whole life (timeout + this check + CLOSE_GRACE_MS) within
        // timeout + ¾ s; the check walks the open connections only, so it is cheap.
        connectionsCheckingInterval: Math.min(250, c.HEADERS_TIMEOUT_MS),
      },
      listener,
    );
    // Node's own answers are the precise ones (431, 408, 400), but its default handler destroys the socket with the
    // client's bytes unread (and says nothing on a reused keep-alive connection), so the client often sees a reset
    // instead of the answer; answer and end gracefully instead, then destroy after a short grace.
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) {
        socket.destroy();
        return;
      }
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      destroyAfterGrace(socket);
    });
    // Answers with `Connection: close` (a 413 during an upload, any answer while stopping) need nothing here: Node
    // destroys those sockets itself once the answer is written, even while the client keeps sending
    // (test/hostile.slowclients.test.ts checks both paths on the server's side).
    if (cutStalledReaders) {
      // A client that stops reading its responses (e.g. pipelining without reading) holds a socket whose writes
      // never drain; the receive-side timeouts above never fire for it. Inactivity this long cuts it.
      server.timeout = c.REQUEST_TIMEOUT_MS;
      // A plain close would queue the FIN behind megabytes of answers the client never reads (they sit in the
      // kernel's send buffer, so Node sees nothing pending); a reset frees them at once. Idle keep-alive
      // connections are not affected: Node ends those through keepAliveTimeout, without this event.
      server.on('timeout', (socket: Socket) => socket.resetAndDestroy());
    }
    return server;
  }

  /** Starts the sweeper and both listeners; resolves to the bound addresses. */
  async start(): Promise<{ public: AddressInfo; management: AddressInfo }> {
    const c = this.#deps.config;
    await this.#deps.store.ping();
    this.monitor.start();
    const pub = await listen(this.publicServer, c.PORT, c.HOST);
    const mgmt = await listen(this.managementServer, c.MANAGEMENT_PORT, c.MANAGEMENT_HOST);
    return { public: pub, management: mgmt };
  }

  /**
   * Stops accepting connections, lets in-flight requests finish (up to SHUTDOWN_TIMEOUT_MS, then cuts the rest),
   * stops the sweeper and closes the store.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    const timeout = this.#deps.config.SHUTDOWN_TIMEOUT_MS;
    const closeServer = (server: Server) =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        const timer = setTimeout(() => server.closeAllConnections(), timeout);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
    const closing = Promise.all([closeServer(this.publicServer), closeServer(this.managementServer)]);
    // Releases long-poll waiters so their requests finish now instead of holding shutdown open.
    await this.monitor.close();
    await closing;
    await this.#deps.store.close();
  }
}
