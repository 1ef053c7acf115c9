import { createRoute, z } from '@hono/zod-openapi';
import { revokeApiKey } from '../../../auth/api-keys.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { ApiKeySchema, errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';

export const revokeApiKeyRoute = createRoute({
  method: 'delete',
  path: '/v1/orgs/{org}/api-keys/{id}',
  operationId: 'revokeApiKey',
  tags: ['API keys'],
  summary: 'Revoke an API key',
  description: 'Role: admin. The key stops authenticating at once.',
  middleware: [requireAccess('org:admin')] as const,
  request: { params: OrgParams.extend({ id: z.string().max(64) }) },
  responses: {
    200: jsonResponse(z.object({ api_key: ApiKeySchema.extend({ revoked: z.literal(true) }) }), 'Revoked'),
    ...errorResponses(),
  },
});

export function registerRevokeApiKey(app: ApiApp) {
  app.openapi(revokeApiKeyRoute, async (c) => {
    const deps = c.get('deps');
    const apiKey = await revokeApiKey(deps.bus.emit, { ctx: verbContextOf(c), input: { id: c.req.valid('param').id } });
    deps.authenticator.forget(apiKey.id);
    return c.json({ api_key: { ...apiKey, revoked: true as const } }, 200);
  });
}
