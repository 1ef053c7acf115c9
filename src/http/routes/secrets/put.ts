import { createRoute, z } from '@hono/zod-openapi';
import { setSecret } from '../../../secrets/verbs.ts';
import { limitBody } from '../../body.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonBody, jsonResponse } from '../../schemas.ts';
import { SecretParams, SecretSchema } from '../../schemas-secrets.ts';
import { PutSecretInput } from '../../../secrets/vault.ts';

export const putSecretRoute = createRoute({
  method: 'put',
  path: '/v1/orgs/{org}/secrets/{name}',
  operationId: 'putSecret',
  tags: ['Secrets'],
  summary: 'Store a credential, encrypted at rest; the value is never returned',
  description: 'Role: admin. Creates or replaces the named secret; the answer carries its fingerprint and last four characters, never the value.',
  middleware: [requireAccess('org:admin'), limitBody(() => 128 * 1024)] as const,
  request: { params: SecretParams, body: jsonBody(PutSecretInput) },
  responses: { 200: jsonResponse(z.object({ secret: SecretSchema }), 'Stored'), ...errorResponses(400, 413, 415, 422, 503) },
});

export function registerPutSecret(app: ApiApp) {
  app.openapi(putSecretRoute, async (c) => {
    const secret = await setSecret(c.get('deps').bus.secrets, { ctx: verbContextOf(c), input: { name: c.req.valid('param').name, secret: c.req.valid('json') } });
    return c.json({ secret }, 200);
  });
}
