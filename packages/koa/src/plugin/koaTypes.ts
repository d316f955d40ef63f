import type { IncomingMessage } from 'node:http';

/**
 * The part of a Koa 3 context the middleware reads and writes. A Koa `Context` is assignable to it, so the package's
 * published types need neither `koa` nor `@types/koa`, and an app that has them gets a middleware `app.use()` takes.
 */
export interface KoaContextLike {
  readonly req: IncomingMessage;
  readonly path: string;
  /** Koa's request; a body parser mounted before the monitor adds `body` and `rawBody` to it. */
  readonly request: object;
  status: number;
  type: string;
  body: unknown;
  set(field: { [key: string]: string | string[] }): void;
}

/** A Koa 3 middleware, structurally: `(ctx, next) => Promise`. */
export type KoaMiddleware = (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<unknown>;
