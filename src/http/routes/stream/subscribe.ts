import { createRoute, z } from '@hono/zod-openapi';
import { decodeCursor, parseTypeFilter } from '../../../signals/model.ts';
import { principalOf, requireAccess, tenantOf, type ApiApp } from '../../context.ts';
import { signalStreamResponse } from '../../sse.ts';
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

export function registerStream(app: ApiApp) {
  app.openapi(streamRoute, async (c) => {
    const query = c.req.valid('query');
    const resumeFrom = c.req.valid('header')['last-event-id'] ?? query.after;
    const types = parseTypeFilter(query.types);
    return signalStreamResponse(c, c.get('deps'), {
      tenant: tenantOf(c),
      keyId: principalOf(c).keyId,
      ...(resumeFrom ? { resumeAfter: decodeCursor(resumeFrom, 'after') } : {}),
      ...(types ? { types } : {}),
    });
  });
}
