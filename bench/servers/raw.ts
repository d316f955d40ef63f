/** Peer: raw `node:http` answering `200 OK` to everything. The ceiling any framework is measured against. */
import { createServer } from 'node:http';
import { announce, exitOnSignal } from '../lib/announce.ts';

const server = createServer((_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': '2' });
  res.end('OK');
});
exitOnSignal();
server.listen(0, '127.0.0.1', () => announce({ port: (server.address() as { port: number }).port }));
