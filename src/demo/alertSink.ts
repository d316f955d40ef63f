/**
 * The compose stack's default notification target (`alert-sink:5001`, see alertmanager/alertmanager.yml): an
 * Alertmanager webhook receiver that prints one JSON line per alert on stdout (`docker compose logs alert-sink`).
 * Replace it with Slack, email or a pager in alertmanager.yml for real use.
 *
 *   node dist/demo/alertSink.js            (ALERT_SINK_PORT, default 5001)
 */
import { createServer, type Server } from 'node:http';
import { pathToFileURL } from 'node:url';

interface WebhookAlert {
  status?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  startsAt?: string;
  endsAt?: string;
}

interface WebhookMessage {
  receiver?: string;
  status?: string;
  alerts?: WebhookAlert[];
}

const MAX_BODY = 1024 * 1024;

/** One log line per alert of an Alertmanager webhook message. */
export function summarize(path: string, message: WebhookMessage): string[] {
  return (message.alerts ?? []).map((a) =>
    JSON.stringify({
      route: path,
      receiver: message.receiver,
      status: a.status ?? message.status,
      alertname: a.labels?.alertname,
      severity: a.labels?.severity,
      job: a.labels?.job,
      instance: a.labels?.instance,
      summary: a.annotations?.summary,
      startsAt: a.startsAt,
      endsAt: a.endsAt,
    }),
  );
}

export function alertSink(write: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Server {
  return createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') return void res.writeHead(200).end('OK');
    if (req.method !== 'POST') return void res.writeHead(405, { allow: 'POST' }).end();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      try {
        const message = JSON.parse(Buffer.concat(chunks).toString('utf8')) as WebhookMessage;
        for (const line of summarize(req.url ?? '/', message)) write(line);
        res.writeHead(200).end('OK');
      } catch {
        res.writeHead(400).end('expected an Alertmanager webhook JSON body');
      }
    });
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.ALERT_SINK_PORT ?? 5001);
  const server = alertSink().listen(port, process.env.ALERT_SINK_HOST ?? '0.0.0.0', () =>
    process.stderr.write(`alert-sink: listening on ${port}\n`),
  );
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
