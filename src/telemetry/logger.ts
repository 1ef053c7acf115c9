/**
 * pino, one JSON line per event — or, when stdout is a terminal, the same
 * events as readable lines (pino-pretty), so a first `npm start` is legible.
 * Redaction is by construction — secrets are never put into logged objects —
 * with `redact` as a second net for the header names that carry them.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

/** Readable lines for a person at a terminal; JSON for everything else (files, pipes, collectors). */
export function logFormat(stdout: { isTTY?: boolean }): 'pretty' | 'json' {
  return stdout.isTTY ? 'pretty' : 'json';
}

function prettyStdout(): DestinationStream {
  return pretty({ destination: 1, sync: true, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' });
}

/**
 * Logs to stdout asynchronously in blocks of up to 4 KiB, flushed at least
 * every 250 ms: one write for many request lines instead of one each (a
 * measurable share of an emit's CPU). pino flushes what is left on exit.
 */
function bufferedStdout(): DestinationStream {
  const stream = pino.destination({ dest: 1, sync: false, minLength: 4096 });
  setInterval(() => stream.flush(), 250).unref();
  return stream;
}

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
    destination ?? (logFormat(process.stdout) === 'pretty' ? prettyStdout() : bufferedStdout()),
  );
}
