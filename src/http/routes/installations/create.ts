import { createRoute } from '@hono/zod-openapi';
import { installPackage } from '../../../packages/installations.ts';
import { limitBody } from '../../body.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams } from '../../schemas.ts';
import { InstallationResponse, InstallBody } from '../../schemas-installations.ts';
import { viewOf } from './view.ts';

export const installPackageRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/installations',
  operationId: 'createInstallation',
  tags: ['Installations'],
  summary: 'Install a package version with its config and secrets',
  description:
    "Role: admin. 202 with status `installing`: a job runs the install steps, then the installation is `installed` or `failed` with an error report. An invalid config is 422 with the schema's errors (JSON pointers under `/config`) and writes nothing; a yanked version is 422. The same package, version and config again answers the existing installation (200); another installation of a package that allows one is 409.",
  middleware: [requireAccess('org:admin'), limitBody(() => 256 * 1024)] as const,
  request: { params: OrgParams, body: jsonBody(InstallBody) },
  responses: {
    200: jsonResponse(InstallationResponse, 'Already installed so: nothing changed'),
    202: jsonResponse(InstallationResponse, 'Requested; installing'),
    ...errorResponses(400, 409, 413, 415, 422, 503),
  },
});

export function registerInstallPackage(app: ApiApp) {
  app.openapi(installPackageRoute, async (c) => {
    const { installation, created } = await installPackage(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: c.req.valid('json') });
    return c.json({ installation: viewOf(c, installation) }, created ? 202 : 200);
  });
}
