import { createRoute } from '@hono/zod-openapi';
import { z } from '@hono/zod-openapi';
import { CreateOrgInput, provisionOrg } from '../../../tenancy/provision.ts';
import { orgView } from '../../../tenancy/tenant.ts';
import { requireAccess, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonBody, jsonResponse, OrgSchema } from '../../schemas.ts';

const OrgResponse = z.object({ org: OrgSchema });

export const createOrgRoute = createRoute({
  method: 'post',
  path: '/v1/orgs',
  operationId: 'createOrg',
  tags: ['Organizations'],
  summary: 'Create an organization and provision its schema',
  description: 'Role: platform_admin. Idempotent: the same slug and name again answers 200 with the existing organization; another name for the slug is 409.',
  middleware: [requireAccess('platform:admin'), limitBody(() => 64 * 1024)] as const,
  request: { body: jsonBody(CreateOrgInput) },
  responses: {
    201: jsonResponse(OrgResponse, 'Created'),
    200: jsonResponse(OrgResponse, 'Already existed with the same name'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerCreateOrg(app: ApiApp) {
  app.openapi(createOrgRoute, async (c) => {
    const deps = c.get('deps');
    const { tenant, created } = await provisionOrg(deps.bus.orgs, { input: c.req.valid('json') });
    return c.json({ org: orgView(tenant) }, created ? 201 : 200);
  });
}
