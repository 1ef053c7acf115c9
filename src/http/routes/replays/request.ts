import { createRoute } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { roleHolds } from '../../../auth/roles.ts';
import { requestReplay } from '../../../replay/verbs.ts';
import { limitBody } from '../../body.ts';
import { principalOf, requireAccess, verbContextOf, type ApiApp, type ApiEnv } from '../../context.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams } from '../../schemas.ts';
import { ReplayRequestBody, ReplayResponse } from '../../schemas-replays.ts';

/**
 * A key that may read the org but not replay still makes an attempt, and
 * every attempt is a signal: the verb records the refusal before the 403,
 * whatever the body holds.
 */
const recordRefusals: MiddlewareHandler<ApiEnv> = async (c, next) => {
  const { role } = principalOf(c);
  if (!roleHolds(role, 'org:replay')) {
    const body: unknown = await c.req.json().catch(() => ({}));
    await requestReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { role, request: body } });
  }
  await next();
};

export const requestReplayRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/replays',
  operationId: 'requestReplay',
  tags: ['Replays'],
  summary: 'Request a replay: rebuild projections, redeliver to handlers, or materialize state as of a point',
  description:
    'Role: admin or support (platform_admin); `new_directives: "execute"` needs admin. `reason` names the incident or ticket. ' +
    'A replay of the same mode whose projections or handlers overlap one queued or running is 409 `replay_in_progress`. ' +
    'Every attempt, refused ones included, is recorded as a signal.',
  middleware: [requireAccess('org:read'), limitBody(() => 64 * 1024), recordRefusals] as const,
  request: { params: OrgParams, body: jsonBody(ReplayRequestBody) },
  responses: {
    202: jsonResponse(ReplayResponse, 'Accepted and queued'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerRequestReplay(app: ApiApp) {
  app.openapi(requestReplayRoute, async (c) => {
    const replay = await requestReplay(c.get('deps').bus.replays, {
      ctx: verbContextOf(c),
      input: { role: principalOf(c).role, request: c.req.valid('json') },
    });
    return c.json({ replay }, 202);
  });
}
