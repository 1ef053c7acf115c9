import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { decodeCursor, parseTypeFilter } from '../../../signals/model.ts';
import { principalOf, requireAccess, tenantOf, type ApiApp } from '../../context.ts';
import { problem, problemResponse } from '../../problem.ts';
import { errorResponses, OrgParams } from '../../schemas.ts';

export const streamRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/stream',
  operationId: 'streamSignals',
  tags: ['Signals'],
  summary: 'Server-Sent Events: each signal once, in stream order, resumable',
  description:
    'Each event is `id: <cursor>`, `event: signal`, `data: <signal JSON>`. Reconnect with `Last-Event-ID` (or `after`) ' +
    'to resume after that cursor with nothing skipped or repeated. Without either, the stream starts at the present; ' +
    '`after=0` replays from the beginning. A comment heartbeat is sent while idle. Concurrent streams are capped per ' +
    'key and per organization: over a cap the answer is 429 `rate_limited`.',
  middleware: [requireAccess('org:read')] as const,
  request: {
    params: OrgParams,
    query: z.object({
      after: z.string().max(64).optional(),
      types: z.string().max(2000).optional().describe('Comma-separated types, or prefix.* patterns'),
    }),
    headers: z.object({ 'last-event-id': z.string().max(64).optional() }),
  },
  responses: {
    200: { description: 'An event stream', content: { 'text/event-stream': { schema: z.string() } } },
    ...errorResponses(422),
  },
});

/** Streams end by the client's leave; a second is a fair first wait for a slot. */
const RETRY_AFTER_SECONDS = '1';

export function registerStream(app: ApiApp) {
  app.openapi(streamRoute, async (c) => {
    const deps = c.get('deps');
    const tenant = tenantOf(c);
    const query = c.req.valid('query');
    const resumeFrom = c.req.valid('header')['last-event-id'] ?? query.after;
    const resumeAfter = resumeFrom ? decodeCursor(resumeFrom, 'after') : undefined;
    const types = parseTypeFilter(query.types);
    const release = deps.streamSlots.acquire(principalOf(c).keyId, tenant.id);
    if (!release) {
      const response = problemResponse(problem('rate_limited', 'too many concurrent streams for this key or organization'), c.get('requestId'));
      response.headers.set('retry-after', RETRY_AFTER_SECONDS);
      return response;
    }
    const abort = new AbortController();
    try {
      // Without a cursor the stream starts at the present: rows committed
      // before we connected may sit above the horizon, but are the past.
      const present = resumeAfter ? undefined : await deps.streams.present();
      const response = streamSSE(c, async (stream) => {
        stream.onAbort(() => {
          abort.abort();
          release();
        });
        try {
          await stream.write(': connected\n\n');
          const chunks = deps.streams.follow({
            tenant,
            after: resumeAfter ?? present!.cursor,
            ...(types ? { types } : {}),
            ...(present ? { past: present } : {}),
            heartbeatMs: deps.heartbeatMs,
            abort: abort.signal,
          });
          for await (const chunk of chunks) await stream.write(chunk.kind === 'events' ? chunk.data : ': heartbeat\n\n');
        } finally {
          release();
        }
      }, async (error) => {
        // The client reconnects with its Last-Event-ID; the cause is ours to see.
        deps.logger.warn({ request_id: c.get('requestId'), err: error }, 'event stream ended by an error');
      });
      // streamSSE sets `no-cache`; like every API answer, the stream is not to be stored.
      response.headers.set('cache-control', 'no-store');
      return response;
    } catch (error) {
      release();
      throw error;
    }
  });
}
