import { createRoute } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { getInstallation } from '../../../packages/installation-read.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { InstallationParams, InstallationResponse } from '../../schemas-installations.ts';
import { viewOf } from './view.ts';

export const getInstallationRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/installations/{id}',
  operationId: 'getInstallation',
  tags: ['Installations'],
  summary: 'One installation: status, steps and error report',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. Secrets appear by name only.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: { params: InstallationParams, query: AsOfQuery },
  responses: { 200: jsonResponse(InstallationResponse, 'The installation'), ...errorResponses() },
});

export function registerGetInstallation(app: ApiApp) {
  app.openapi(getInstallationRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('installation', id)) throw notFound('installation');
    const installation = await getInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id } });
    return c.json({ installation: viewOf(c, installation) }, 200);
  });
}
