import { createRoute, z } from '@hono/zod-openapi';
import { requireAccess, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { packageSummaryView, PackageSummarySchema } from '../../schemas-packages.ts';

export const listPackagesRoute = createRoute({
  method: 'get',
  path: '/v1/packages',
  operationId: 'listPackages',
  tags: ['Packages'],
  summary: 'The package registry: every package with its versions and latest installable one',
  description: 'Role: any valid key, org or platform. Every package by name, with its versions and the latest one not yanked.',
  middleware: [requireAccess('authenticated')] as const,
  responses: { 200: jsonResponse(z.object({ data: z.array(PackageSummarySchema), next_cursor: z.null() }), 'Packages by name'), ...errorResponses() },
});

export function registerListPackages(app: ApiApp) {
  app.openapi(listPackagesRoute, (c) => c.json({ data: c.get('deps').packages.list().map(packageSummaryView), next_cursor: null }, 200));
}
