/**
 * pino, one JSON line per event. Redaction is by construction — secrets are
 * never put into logged objects — with `redact` as a second net for the
 * header names that carry them.
 */
import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Logs to stdout asynchronously: lines written while a write is in flight go
 * out together, one syscall for many requests (pino flushes on exit).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'signalbus' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['authorization', 'headers.authorization', 'req.headers.authorization', 'secret', '*.secret'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
