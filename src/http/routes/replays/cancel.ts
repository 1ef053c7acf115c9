import { createRoute } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { cancelReplay } from '../../../replay/verbs.ts';
import { limitBody } from '../../body.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, optionalJsonBody } from '../../schemas.ts';
import { DecisionReasonInput } from '../../schemas-directives.ts';
import { ReplayIdParams, ReplayResponse } from '../../schemas-replays.ts';

export const cancelReplayRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/replays/{id}/cancel',
  operationId: 'cancelReplay',
  tags: ['Replays'],
  summary: 'Cancel a queued or running replay, or drop a finished as-of replay now',
  description: 'Role: admin or support (platform_admin). A running replay stops at its next checkpoint and discards its work; live state is untouched. A replay that has ended is 409.',
  middleware: [requireAccess('org:replay'), limitBody(() => 64 * 1024)] as const,
  request: { params: ReplayIdParams, body: optionalJsonBody(DecisionReasonInput) },
  responses: { 200: jsonResponse(ReplayResponse, 'Cancelled (or its as-of state dropped)'), ...errorResponses(400, 409, 413, 415, 422) },
});

export function registerCancelReplay(app: ApiApp) {
  app.openapi(cancelReplayRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('replay', id)) throw notFound('replay');
    const replay = await cancelReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { id, reason: c.req.valid('json').reason ?? null } });
    return c.json({ replay }, 200);
  });
}
