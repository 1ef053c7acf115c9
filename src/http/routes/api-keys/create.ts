import { createRoute, z } from '@hono/zod-openapi';
import { CreateApiKeyInput, createApiKey } from '../../../auth/api-keys.ts';
import { principalOf, requireAccess, tenantOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { ApiKeySchema, errorResponses, jsonBody, jsonResponse, OrgParams } from '../../schemas.ts';

export const createApiKeyRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/api-keys',
  operationId: 'createApiKey',
  tags: ['API keys'],
  summary: 'Create an API key for the organization; the secret is shown once',
  description: 'Role: admin. The key acts as the given actor; its secret (`sbk_…`) is in this response only and is stored as a hash.',
  middleware: [requireAccess('org:admin'), limitBody(() => 64 * 1024)] as const,
  request: { params: OrgParams, body: jsonBody(CreateApiKeyInput) },
  responses: {
    201: jsonResponse(z.object({ api_key: ApiKeySchema, secret: z.string() }), 'Created'),
    ...errorResponses(400, 413, 415, 422),
  },
});

export function registerCreateApiKey(app: ApiApp) {
  app.openapi(createApiKeyRoute, async (c) => {
    const result = await createApiKey(c.get('deps').bus.emit, {
      tenant: tenantOf(c),
      input: c.req.valid('json'),
      by: principalOf(c).actor,
    });
    return c.json({ api_key: result.apiKey, secret: result.secret }, 201);
  });
}
