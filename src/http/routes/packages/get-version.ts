import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { requireAccess, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { PackageVersionParams, releaseView, ReleaseSchema } from '../../schemas-packages.ts';

const VersionResponse = z.object({
  manifest: z.record(z.string(), z.unknown()).describe('The manifest as published: its canonical JSON hashes to release.sha256'),
  release: ReleaseSchema,
});

export const getPackageVersionRoute = createRoute({
  method: 'get',
  path: '/v1/packages/{package}/{version}',
  operationId: 'getPackageVersion',
  tags: ['Packages'],
  summary: "One published version's manifest",
  description: 'Role: any valid key, org or platform. The manifest exactly as published: its canonical JSON hashes to `release.sha256`. A yanked version stays readable.',
  middleware: [requireAccess('authenticated')] as const,
  request: { params: PackageVersionParams },
  responses: { 200: jsonResponse(VersionResponse, 'The manifest and its release'), ...errorResponses() },
});

export function registerGetPackageVersion(app: ApiApp) {
  app.openapi(getPackageVersionRoute, (c) => {
    const { package: name, version } = c.req.valid('param');
    const packages = c.get('deps').packages;
    if (!packages.get(name)) throw notFound(`package ${name}`);
    const entry = packages.getVersion(name, version);
    if (!entry) throw notFound(`version ${version} of ${name}`);
    return c.json({ manifest: entry.raw, release: releaseView(entry) }, 200);
  });
}
