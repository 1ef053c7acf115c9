import { createRoute } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { showReplay } from '../../../replay/verbs.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { ReplayIdParams, ReplayResponse } from '../../schemas-replays.ts';

export const getReplayRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/replays/{id}',
  operationId: 'getReplay',
  tags: ['Replays'],
  summary: 'One replay: status, progress (processed, total, rate, ETA) and report',
  description: 'Role: viewer or above.',
  middleware: [requireAccess('org:read')] as const,
  request: { params: ReplayIdParams },
  responses: { 200: jsonResponse(ReplayResponse, 'The replay'), ...errorResponses() },
});

export function registerGetReplay(app: ApiApp) {
  app.openapi(getReplayRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('replay', id)) throw notFound('replay');
    return c.json({ replay: await showReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { id } }) }, 200);
  });
}
