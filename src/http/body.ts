/**
 * Request bodies with a size limit. Behind @hono/node-server the body is read
 * straight from Node's IncomingMessage and handed to hono's body cache, so
 * `c.req.json()` (and the zod validators) parse it without materialising a
 * WHATWG Request and its streams — on the emit path that machinery cost more
 * CPU than the rest of the request. Elsewhere (in-process `app.request`) hono's
 * own bodyLimit does the same job.
 */
import type { IncomingMessage } from 'node:http';
import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { DomainError } from '../core/errors.ts';
import type { ApiEnv, HttpDeps } from './context.ts';

const tooLarge = (maxBytes: number) => new DomainError('payload_too_large', `the request body is over ${maxBytes} bytes`);

function readIncoming(incoming: IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        incoming.off('data', onData);
        // Drain the rest unread so the 413 can still be written on this connection.
        incoming.resume();
        reject(tooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    incoming.on('data', onData);
    incoming.once('end', () => resolve(Buffer.concat(chunks, size).toString('utf8')));
    incoming.once('error', reject);
  });
}

/** Refuses bodies over `maxBytes` (by Content-Length, or while reading) with 413 `payload_too_large`. */
export function limitBody(maxBytes: (deps: HttpDeps) => number): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const limit = maxBytes(c.get('deps'));
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (!incoming || incoming.readableEnded) {
      return bodyLimit({
        maxSize: limit,
        onError: () => {
          throw tooLarge(limit);
        },
      })(c, next);
    }
    const declared = Number(incoming.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
    // hono keeps body promises here; `json()` parses the cached text.
    (c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(await readIncoming(incoming, limit));
    await next();
  };
}
