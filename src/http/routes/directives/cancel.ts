import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { decideDirective } from '../../../directives/transitions.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonResponse, optionalJsonBody } from '../../schemas.ts';
import { DecisionReasonInput, DirectiveSchema, OrgIdParams } from '../../schemas-directives.ts';

export const cancelDirectiveRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/directives/{id}/cancel',
  operationId: 'cancelDirective',
  tags: ['Directives'],
  summary: 'Cancel a directive awaiting approval or approved but not yet executing',
  description: 'Role: operator or above. Recorded as a `directive.cancelled` signal; a directive that can no longer be cancelled is 409 `invalid_transition`.',
  middleware: [requireAccess('org:operate'), limitBody(() => 64 * 1024)] as const,
  request: { params: OrgIdParams, body: optionalJsonBody(DecisionReasonInput) },
  responses: {
    200: jsonResponse(z.object({ directive: DirectiveSchema }), 'Cancelled'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerCancelDirective(app: ApiApp) {
  app.openapi(cancelDirectiveRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('directive', id)) throw notFound('directive');
    const directive = await decideDirective(c.get('deps').bus.directives, {
      ctx: verbContextOf(c),
      input: {
        id,
        action: 'cancel',
        reason: c.req.valid('json').reason ?? null,
      },
    });
    return c.json({ directive }, 200);
  });
}
