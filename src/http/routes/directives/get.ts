import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { showDirective } from '../../../directives/store.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { DirectiveSchema, OrgIdParams } from '../../schemas-directives.ts';

export const getDirectiveRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/directives/{id}',
  operationId: 'getDirective',
  tags: ['Directives'],
  summary: 'Get one directive with its decision and status',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. The directive with its params, decision and status.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: { params: OrgIdParams, query: AsOfQuery },
  responses: { 200: jsonResponse(z.object({ directive: DirectiveSchema }), 'The directive'), ...errorResponses() },
});

export function registerGetDirective(app: ApiApp) {
  app.openapi(getDirectiveRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('directive', id)) throw notFound('directive');
    return c.json({ directive: await showDirective(c.get('deps').bus.directives, { ctx: verbContextOf(c), input: { id } }) }, 200);
  });
}
