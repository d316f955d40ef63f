import { type Logger, pino } from 'pino';

/**
 * JSON logs on stdout. The receiver never passes a solution code or the callback secret to the logger; the redact
 * list is the second line of defence should a future log call pass a whole result or request.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'captcha-callback-monitor' },
      redact: {
        paths: [
          'code',
          '*.code',
          'result.code',
          'secret',
          '*.secret',
          'req.url',
          'url',
          'authorization',
          '*.authorization',
        ],
        censor: '[redacted]',
      },
    },
    destination ?? process.stdout,
  );
}

export type { Logger };
