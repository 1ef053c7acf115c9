import { createRoute, z } from '@hono/zod-openapi';
import { decodeCursor, parseTypeFilter } from '../../../signals/model.ts';
import { showSignals } from '../../../signals/read.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams, SignalSchema } from '../../schemas.ts';

export const listSignalsRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/signals',
  operationId: 'listSignals',
  tags: ['Signals'],
  summary: 'List signals in stream order',
  description: 'Role: viewer or above. Pages by the opaque `after` cursor in commit order; `next_cursor` continues the listing, also at the end of the log, so a poller sees nothing twice.',
  middleware: [requireAccess('org:read')] as const,
  request: {
    params: OrgParams,
    query: z.object({
      after: z.string().max(64).optional().describe('Cursor from a previous page or a signal position; 0 for the beginning'),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
      type: z.string().max(2000).optional().describe('Comma-separated types, or prefix.* patterns'),
      subject: z.string().max(256).optional(),
      correlation_id: z.string().max(256).optional(),
    }),
  },
  responses: {
    200: jsonResponse(
      z.object({ data: z.array(SignalSchema), next_cursor: z.string().nullable(), has_more: z.boolean() }),
      'A page of signals: up to `limit`, ending early (with `has_more` and `next_cursor`) where the next signal would take the page past the byte budget',
    ),
    ...errorResponses(422),
  },
});

export function registerListSignals(app: ApiApp) {
  app.openapi(listSignalsRoute, async (c) => {
    const query = c.req.valid('query');
    const deps = c.get('deps');
    const page = await showSignals(deps.bus.emit, {
      ctx: verbContextOf(c),
      input: {
        ...(query.after ? { after: decodeCursor(query.after) } : {}),
        limit: query.limit,
        maxBytes: deps.maxPageBytes,
        filter: {
          ...(query.type ? { types: parseTypeFilter(query.type, 'type') } : {}),
          ...(query.subject !== undefined ? { subject: query.subject } : {}),
          ...(query.correlation_id !== undefined ? { correlationId: query.correlation_id } : {}),
        },
      },
    });
    return c.json(page, 200);
  });
}
