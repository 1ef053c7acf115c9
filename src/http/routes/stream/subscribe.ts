import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { decodeCursor, parseTypeFilter } from '../../../signals/model.ts';
import { currentHorizon } from '../../../signals/read.ts';
import { tailSignals } from '../../../signals/tail.ts';
import { requireAccess, tenantOf, type ApiApp } from '../../context.ts';
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
    '`after=0` replays from the beginning. A comment heartbeat is sent while idle.',
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

export function registerStream(app: ApiApp) {
  app.openapi(streamRoute, async (c) => {
    const deps = c.get('deps');
    const tenant = tenantOf(c);
    const query = c.req.valid('query');
    const resumeFrom = c.req.valid('header')['last-event-id'] ?? query.after;
    const present = resumeFrom ? undefined : await currentHorizon(deps.sql);
    const after = resumeFrom ? decodeCursor(resumeFrom, 'after') : present!.cursor;
    const types = parseTypeFilter(query.types);
    const abort = new AbortController();
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => abort.abort());
      const events = tailSignals(deps, {
        tenant,
        after,
        ...(types ? { filter: { types } } : {}),
        heartbeatMs: deps.heartbeatMs,
        abort: abort.signal,
      });
      await stream.write(': connected\n\n');
      for await (const event of events) {
        if (event.kind === 'heartbeat') {
          await stream.write(': heartbeat\n\n');
          continue;
        }
        for (const signal of event.signals) {
          // Without a cursor the stream starts at the present: rows committed
          // before we connected may sit above the horizon, but are the past.
          if (present?.isPast(signal.position)) continue;
          await stream.writeSSE({ id: signal.position, event: 'signal', data: JSON.stringify(signal) });
        }
      }
    });
  });
}
