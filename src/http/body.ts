/**
 * Request bodies, bounded before they are parsed. A body is read chunk by
 * chunk — from Node's IncomingMessage behind @hono/node-server, else from
 * the WHATWG request — and refused as soon as it passes the route's byte
 * limit, nests deeper than `MAX_BODY_DEPTH` or holds more values than the
 * configured cap: a scan over the bytes as they arrive, so a hostile body
 * never becomes a structure in memory. The text is then handed to hono's
 * body cache, where `c.req.json()` (and the zod validators) parse it.
 *
 * A non-empty body must be JSON (415 otherwise), whether or not the route
 * declares it optional.
 */
import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { DomainError } from '../core/errors.ts';
import type { ApiEnv, HttpDeps } from './context.ts';

/**
 * Payloads may nest 128 levels (`signals/model.ts`); the envelopes around
 * them (a batch, an item) take a few more. Deeper bodies are refused unread.
 */
export const MAX_BODY_DEPTH = 160;

/** What a route's body limit is measured in. */
export interface BodyLimits {
  maxBytes: number;
  /** Array elements and object members (and containers), counted in the body as a whole. */
  maxValues: number;
}

// The same media types hono's JSON validator parses: application/json and application/*+json.
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

const tooLarge = (maxBytes: number) => new DomainError('payload_too_large', `the request body is over ${maxBytes} bytes`);
const tooManyValues = (maxValues: number) =>
  new DomainError('payload_too_large', `the request body holds more than ${maxValues} values`);
const tooDeep = () => new DomainError('validation_failed', `the request body nests deeper than ${MAX_BODY_DEPTH} levels`);
const notJson = () => new DomainError('unsupported_media_type', 'send the body as application/json');

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/**
 * A scan of JSON text as it streams in: the nesting depth and the number of
 * values, outside strings. Bytes are enough — UTF-8 never puts an ASCII byte
 * inside a multi-byte character. Malformed text is not its concern: the
 * parser refuses it afterwards, and the scan only bounds what it may build.
 */
export function jsonShapeScanner(maxValues: number): (bytes: Uint8Array) => DomainError | undefined {
  let depth = 0;
  let values = 0;
  let inString = false;
  let escaped = false;
  return (bytes) => {
    for (let i = 0; i < bytes.length; i++) {
      const byte = bytes[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (byte === BACKSLASH) escaped = true;
        else if (byte === QUOTE) inString = false;
        continue;
      }
      if (byte === QUOTE) inString = true;
      else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
        if (++depth > MAX_BODY_DEPTH) return tooDeep();
        if (++values > maxValues) return tooManyValues(maxValues);
      } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) depth--;
      else if (byte === COMMA && ++values > maxValues) return tooManyValues(maxValues);
    }
    return undefined;
  };
}

/** Collects chunks up to the byte limit, scanning them when the body is JSON. */
function collector(limits: BodyLimits, json: boolean) {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const scan = json ? jsonShapeScanner(limits.maxValues) : undefined;
  return {
    push(chunk: Uint8Array): DomainError | undefined {
      size += chunk.length;
      if (size > limits.maxBytes) return tooLarge(limits.maxBytes);
      const refused = scan?.(chunk);
      if (refused) return refused;
      chunks.push(chunk);
      return undefined;
    },
    bytes: () => Buffer.concat(chunks, size),
    text: () => Buffer.concat(chunks, size).toString('utf8'),
    get size() {
      return size;
    },
  };
}

type Collector = ReturnType<typeof collector>;

function readIncoming(incoming: IncomingMessage, body: Collector): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      const refused = body.push(chunk);
      if (!refused) return;
      incoming.off('data', onData);
      // Drain the rest unread so the answer can still be written on this connection.
      incoming.resume();
      reject(refused);
    };
    incoming.on('data', onData);
    incoming.once('end', () => resolve());
    incoming.once('error', reject);
  });
}

async function readStream(stream: ReadableStream<Uint8Array>, body: Collector): Promise<void> {
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    const refused = body.push(value);
    if (refused) {
      await reader.cancel().catch(() => {});
      throw refused;
    }
  }
}

/**
 * Reads the body within `limits` (bytes from the route, values from the
 * configuration): 413 `payload_too_large` by Content-Length or while reading,
 * 422 past `MAX_BODY_DEPTH`, 415 for a non-empty body that is not JSON.
 */
export function limitBody(maxBytes: (deps: HttpDeps) => number): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const deps = c.get('deps');
    const limits = { maxBytes: maxBytes(deps), maxValues: deps.maxBodyValues };
    const contentType = c.req.header('content-type');
    const json = contentType !== undefined && JSON_MEDIA_TYPE.test(contentType.split(';')[0]!.trim());
    const declared = Number(c.req.header('content-length'));
    if (!json && declared > 0) throw notJson();
    if (Number.isFinite(declared) && declared > limits.maxBytes) throw tooLarge(limits.maxBytes);

    const body = collector(limits, json);
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (incoming && !incoming.readableEnded) await readIncoming(incoming, body);
    else if (c.req.raw.body && !c.req.raw.bodyUsed) await readStream(c.req.raw.body, body);
    // A body sent without a length (chunked) is known to be empty only once read.
    if (!json && body.size > 0) throw notJson();
    // hono keeps body promises here; `json()` parses the cached text.
    (c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(body.text());
    await next();
  };
}

/**
 * The body's exact bytes, up to `maxBytes` (413 by Content-Length or while
 * reading), whatever its media type: for routes that verify a signature over
 * the raw body (inbound webhooks), where re-encoding would break it.
 */
export async function readRawBody(c: Context<ApiEnv>, maxBytes: number): Promise<Buffer> {
  const declared = Number(c.req.header('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes);
  const body = collector({ maxBytes, maxValues: Number.POSITIVE_INFINITY }, false);
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming && !incoming.readableEnded) await readIncoming(incoming, body);
  else if (c.req.raw.body && !c.req.raw.bodyUsed) await readStream(c.req.raw.body, body);
  return body.bytes();
}
