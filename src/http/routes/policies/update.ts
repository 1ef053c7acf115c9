import { createRoute } from '@hono/zod-openapi';
import { PolicyDocument } from '../../../policy/model.ts';
import { updatePolicy } from '../../../directives/policy-store.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams } from '../../schemas.ts';
import { policyResponse, PolicySchema } from '../../schemas-directives.ts';

export const updatePolicyRoute = createRoute({
  method: 'put',
  path: '/v1/orgs/{org}/policies',
  operationId: 'updatePolicy',
  tags: ['Policies'],
  summary: 'Replace the policy; every CEL condition is compiled first (422 with its position)',
  description: 'Role: admin. Replaces rules and guards as a whole, one version up; with no matching allow rule a directive is denied.',
  middleware: [requireAccess('org:admin'), limitBody(() => 4 * 1024 * 1024)] as const,
  request: { params: OrgParams, body: jsonBody(PolicyDocument) },
  responses: { 200: jsonResponse(PolicySchema, 'The new policy, one version up'), ...errorResponses(400, 413, 415, 422) },
});

export function registerUpdatePolicy(app: ApiApp) {
  app.openapi(updatePolicyRoute, async (c) => {
    const policy = await updatePolicy(c.get('deps').bus.emit, { ctx: verbContextOf(c), input: c.req.valid('json') });
    return c.json(policyResponse(policy), 200);
  });
}
