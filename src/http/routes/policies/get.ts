import { createRoute } from '@hono/zod-openapi';
import { showPolicy } from '../../../directives/policy-store.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';
import { policyResponse, PolicySchema } from '../../schemas-directives.ts';

export const getPolicyRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/policies',
  operationId: 'getPolicy',
  tags: ['Policies'],
  summary: "The organization's policy: ordered rules and guards",
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. The current version of the ordered rules and the guards.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: { params: OrgParams, query: AsOfQuery },
  responses: { 200: jsonResponse(PolicySchema, 'The current policy'), ...errorResponses() },
});

export function registerGetPolicy(app: ApiApp) {
  app.openapi(getPolicyRoute, async (c) => {
    return c.json(policyResponse(await showPolicy(c.get('deps').bus.directives, { ctx: verbContextOf(c), input: {} })), 200);
  });
}
