import { createRoute, z } from '@hono/zod-openapi';
import { removeSecret } from '../../../secrets/verbs.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { SecretParams, SecretSchema } from '../../schemas-secrets.ts';

export const deleteSecretRoute = createRoute({
  method: 'delete',
  path: '/v1/orgs/{org}/secrets/{name}',
  operationId: 'deleteSecret',
  tags: ['Secrets'],
  summary: 'Remove a credential',
  description: 'Role: admin. Removes the encrypted value; the name can be stored again later.',
  middleware: [requireAccess('org:admin')] as const,
  request: { params: SecretParams },
  responses: { 200: jsonResponse(z.object({ secret: SecretSchema.extend({ deleted: z.literal(true) }) }), 'Removed'), ...errorResponses(422) },
});

export function registerDeleteSecret(app: ApiApp) {
  app.openapi(deleteSecretRoute, async (c) => {
    const secret = await removeSecret(c.get('deps').bus.secrets, { ctx: verbContextOf(c), input: { name: c.req.valid('param').name } });
    return c.json({ secret: { ...secret, deleted: true as const } }, 200);
  });
}
