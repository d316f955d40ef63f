/** Peer: bare Koa 3 + @koa/router with one GET route answering `OK` (no parsing, no storage, no metrics). */
import { createServer } from 'node:http';
import Router from '@koa/router';
import Koa from 'koa';
import { announce, exitOnSignal } from '../lib/announce.ts';

const app = new Koa();
const router = new Router();
router.get('/callback', (ctx) => {
  ctx.body = 'OK';
});
app.use(router.routes());
const server = createServer(app.callback());
exitOnSignal();
server.listen(0, '127.0.0.1', () => announce({ port: (server.address() as { port: number }).port }));
