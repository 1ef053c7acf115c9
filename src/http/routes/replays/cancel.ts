import { createRoute } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { roleHolds } from '../../../auth/roles.ts';
import { forbidden, notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { cancelReplay } from '../../../replay/verbs.ts';
import { limitBody } from '../../body.ts';
import { principalOf, requireAccess, verbContextOf, type ApiApp, type ApiEnv } from '../../context.ts';
import { errorResponses, jsonResponse, optionalJsonBody } from '../../schemas.ts';
import { DecisionReasonInput } from '../../schemas-directives.ts';
import { ReplayIdParams, ReplayResponse } from '../../schemas-replays.ts';

/**
 * A key that may read the org but not replay still makes an attempt, and
 * every attempt is a signal: the verb records the refusal of a replay id
 * before the 403, whatever the body holds.
 */
const recordRefusals: MiddlewareHandler<ApiEnv> = async (c, next) => {
  const { role } = principalOf(c);
  if (!roleHolds(role, 'org:replay')) {
    const id = c.req.param('id') ?? '';
    if (!isId('replay', id)) throw forbidden(`role ${role} may not cancel a replay (needs org:replay)`);
    const body = (await c.req.json().catch(() => ({}))) as { reason?: unknown } | null;
    const reason = typeof body?.reason === 'string' ? body.reason : null;
    await cancelReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { id, role, reason } });
  }
  await next();
};

export const cancelReplayRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/replays/{id}/cancel',
  operationId: 'cancelReplay',
  tags: ['Replays'],
  summary: 'Cancel a queued or running replay, or drop a finished as-of replay now',
  description:
    'Role: admin or support (platform_admin). A running replay stops at its next checkpoint and discards its work; live state is untouched. ' +
    'A replay that has ended is 409. Every attempt, refused ones included, is recorded as a signal.',
  middleware: [requireAccess('org:read'), limitBody(() => 64 * 1024), recordRefusals] as const,
  request: { params: ReplayIdParams, body: optionalJsonBody(DecisionReasonInput) },
  responses: { 200: jsonResponse(ReplayResponse, 'Cancelled (or its as-of state dropped)'), ...errorResponses(400, 409, 413, 415, 422) },
});

export function registerCancelReplay(app: ApiApp) {
  app.openapi(cancelReplayRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('replay', id)) throw notFound('replay');
    const replay = await cancelReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { id, role: principalOf(c).role, reason: c.req.valid('json').reason ?? null } });
    return c.json({ replay }, 200);
  });
}
