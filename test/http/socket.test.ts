import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, listen, type TestApp } from '../support/harness.ts';

/** Requests over a real socket, where bodies are read from Node's request rather than a WHATWG one. */
let t: TestApp;
let server: Awaited<ReturnType<typeof listen>>;
let org: Tenant;
let key: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_MAX_PAYLOAD_BYTES: '1024' } });
  server = await listen(t.app);
  org = await t.createOrg('sockets');
  key = await t.createKey(org, 'operator');
});
afterAll(async () => {
  await server.close();
  await t.close();
});

/** `headers` override the defaults; an undefined one is left out. */
function post(path: string, body: string | Buffer[], headers: Record<string, string | undefined> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: any }>((resolve, reject) => {
    const request = httpRequest(
      `${server.url}${path}`,
      {
        method: 'POST',
        headers: Object.fromEntries(
          Object.entries({ authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }).filter(([, value]) => value !== undefined),
        ) as Record<string, string>,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: response.statusCode!, headers: response.headers, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    request.on('error', reject);
    // An array is sent chunked, without a Content-Length.
    if (Array.isArray(body)) for (const chunk of body) request.write(chunk);
    else request.write(body);
    request.end();
  });
}

const signalCount = async () =>
  ((await t.app.deps.sql`select count(*)::int as n from org_sockets.signals`)[0]!.n as number);

describe('HTTP over a socket', () => {
  it('emits with a Content-Length body and a chunked one', async () => {
    const body = JSON.stringify({ type: 'socket.sent', payload: { via: 'length' } });
    const sent = await post('/v1/orgs/sockets/signals', body);
    expect(sent.status).toBe(201);
    expect(sent.headers['x-request-id']).toMatch(/^req_/);
    const chunked = await post('/v1/orgs/sockets/signals', [
      Buffer.from('{"type": "socket.sent", '),
      Buffer.from('"payload": {"via": "chunks"}}'),
    ]);
    expect(chunked.status).toBe(201);
    expect(chunked.body.signal.payload).toEqual({ via: 'chunks' });
  });

  it('refuses an oversize body by its Content-Length and while reading a chunked one, writing nothing', async () => {
    const before = await signalCount();
    const big = JSON.stringify({ type: 'socket.big', payload: { data: 'x'.repeat(200 * 1024) } });
    const declared = await post('/v1/orgs/sockets/signals', big);
    expect(declared.status).toBe(413);
    expect(declared.body.code).toBe('payload_too_large');
    const streamed = await post(
      '/v1/orgs/sockets/signals',
      Array.from({ length: 50 }, () => Buffer.from('x'.repeat(4096))),
    );
    expect(streamed.status).toBe(413);
    expect(streamed.body.code).toBe('payload_too_large');
    expect(streamed.headers['x-request-id']).toBe(streamed.body.request_id);
    expect(await signalCount()).toBe(before);
  });

  it('refuses a non-empty body that is not declared JSON with 415, even where the body is optional', async () => {
    const before = await signalCount();
    const reason = JSON.stringify({ reason: 'dropped silently before' });
    for (const contentType of [undefined, 'text/plain']) {
      // A directive route whose body is optional, and one whose body is required; sent with a length and chunked.
      for (const [path, body] of [
        ['/v1/orgs/sockets/directives/dir_00000000000000000000000000/reject', reason],
        ['/v1/orgs/sockets/signals', [Buffer.from('{"type": "socket.sent", '), Buffer.from('"payload": {}}')]],
      ] as const) {
        const answer = await post(path, typeof body === 'string' ? body : [...body], { 'content-type': contentType });
        expect(answer.status, `${path} with ${contentType}`).toBe(415);
        expect(answer.body.code).toBe('unsupported_media_type');
      }
    }
    expect(await signalCount()).toBe(before);
    // No body at all still needs no content type.
    const empty = await post('/v1/orgs/sockets/directives/dir_00000000000000000000000000/reject', '', { 'content-type': undefined });
    expect(empty.status).toBe(404);
  });

  it('answers malformed JSON with 400 invalid_json', async () => {
    const response = await post('/v1/orgs/sockets/signals', '{"type": "socket.sent",');
    expect(response.status).toBe(400);
    expect(response.body.code).toBe('invalid_json');
  });

  it('sends the request id on event streams too', async () => {
    const controller = new AbortController();
    const response = await fetch(`${server.url}/v1/orgs/sockets/stream`, {
      headers: { authorization: `Bearer ${key}` },
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
    controller.abort();
    await response.body?.cancel().catch(() => {});
  });
});
