import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { decideDirective } from '../../../directives/transitions.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonResponse, optionalJsonBody } from '../../schemas.ts';
import { DecisionReasonInput, DirectiveSchema, OrgIdParams } from '../../schemas-directives.ts';

export const rejectDirectiveRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/directives/{id}/reject',
  operationId: 'rejectDirective',
  tags: ['Directives'],
  summary: 'Reject a directive awaiting approval',
  description: 'Role: operator or above. Recorded as a `directive.rejected` signal with the optional reason; a directive not awaiting approval is 409 `invalid_transition`.',
  middleware: [requireAccess('org:operate'), limitBody(() => 64 * 1024)] as const,
  request: { params: OrgIdParams, body: optionalJsonBody(DecisionReasonInput) },
  responses: {
    200: jsonResponse(z.object({ directive: DirectiveSchema }), 'Rejected'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerRejectDirective(app: ApiApp) {
  app.openapi(rejectDirectiveRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('directive', id)) throw notFound('directive');
    const directive = await decideDirective(c.get('deps').bus.directives, {
      ctx: verbContextOf(c),
      input: {
        id,
        action: 'reject',
        reason: c.req.valid('json').reason ?? null,
      },
    });
    return c.json({ directive }, 200);
  });
}
