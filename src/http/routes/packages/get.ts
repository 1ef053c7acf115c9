import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { requireAccess, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { PackageParams, packageView, PackageSchema } from '../../schemas-packages.ts';

export const getPackageRoute = createRoute({
  method: 'get',
  path: '/v1/packages/{package}',
  operationId: 'getPackage',
  tags: ['Packages'],
  summary: 'One package: its versions (yanked ones marked) and the latest installable one',
  description: 'Role: any valid key, org or platform. Yanked versions stay listed, marked, and are never `latest`.',
  middleware: [requireAccess('authenticated')] as const,
  request: { params: PackageParams },
  responses: { 200: jsonResponse(z.object({ package: PackageSchema }), 'The package'), ...errorResponses() },
});

export function registerGetPackage(app: ApiApp) {
  app.openapi(getPackageRoute, (c) => {
    const { package: name } = c.req.valid('param');
    const entry = c.get('deps').packages.get(name);
    if (!entry) throw notFound(`package ${name}`);
    return c.json({ package: packageView(entry) }, 200);
  });
}
