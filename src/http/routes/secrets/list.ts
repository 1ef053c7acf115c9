import { createRoute, z } from '@hono/zod-openapi';
import { listOrgSecrets } from '../../../secrets/verbs.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';
import { SecretSchema } from '../../schemas-secrets.ts';

export const listSecretsRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/secrets',
  operationId: 'listSecrets',
  tags: ['Secrets'],
  summary: "The org's secrets: names, fingerprints and last four characters",
  description: 'Role: admin. Names, fingerprints and last four characters; never values.',
  middleware: [requireAccess('org:admin')] as const,
  request: { params: OrgParams },
  responses: { 200: jsonResponse(z.object({ data: z.array(SecretSchema), next_cursor: z.null() }), 'Secrets by name'), ...errorResponses() },
});

export function registerListSecrets(app: ApiApp) {
  app.openapi(listSecretsRoute, async (c) => {
    const data = await listOrgSecrets(c.get('deps').bus.secrets, { ctx: verbContextOf(c), input: {} });
    return c.json({ data, next_cursor: null }, 200);
  });
}
