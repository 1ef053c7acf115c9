import { createRoute } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { configureInstallation, upgradeInstallation } from '../../../packages/installations.ts';
import { limitBody } from '../../body.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonBody, jsonResponse } from '../../schemas.ts';
import { ConfigureBody, InstallationParams, InstallationResponse, UpgradeBody } from '../../schemas-installations.ts';
import { viewOf } from './view.ts';

export const configureInstallationRoute = createRoute({
  method: 'patch',
  path: '/v1/orgs/{org}/installations/{id}',
  operationId: 'configureInstallation',
  tags: ['Installations'],
  summary: "Change an installation's config or secrets",
  description:
    "Role: admin. The config replaces the old one and must fit the installed version's schema (422 with JSON pointers, nothing changed); secrets are stored in the vault under the installation and never echoed. Recorded as `installation.configured`.",
  middleware: [requireAccess('org:admin'), limitBody(() => 256 * 1024)] as const,
  request: { params: InstallationParams, body: jsonBody(ConfigureBody) },
  responses: { 200: jsonResponse(InstallationResponse, 'Changed'), ...errorResponses(400, 409, 413, 415, 422, 503) },
});

export const upgradeInstallationRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/installations/{id}/upgrade',
  operationId: 'upgradeInstallation',
  tags: ['Installations'],
  summary: 'Upgrade (or downgrade) an installation to another version',
  description:
    "Role: admin. The config for the new version — `config` when given, else the installation's — is checked against the new version's schema first: when it does not fit, 422 lists exactly what must change (`errors[].path` as JSON pointers under `/config`) and nothing is recorded. A secret the new version requires and the installation lacks must be given in `secrets` (else 422 naming it). Else 202: a job runs the new version's steps and records `installation.upgraded`, which applies the version and the new config together; a failed upgrade leaves the old version and the old config (retry runs it again).",
  middleware: [requireAccess('org:admin'), limitBody(() => 64 * 1024)] as const,
  request: { params: InstallationParams, body: jsonBody(UpgradeBody) },
  responses: { 202: jsonResponse(InstallationResponse, 'Upgrade requested'), ...errorResponses(400, 409, 413, 415, 422) },
});

export function registerConfigureInstallation(app: ApiApp) {
  app.openapi(configureInstallationRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('installation', id)) throw notFound('installation');
    const installation = await configureInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id, body: c.req.valid('json') } });
    return c.json({ installation: viewOf(c, installation) }, 200);
  });
}

export function registerUpgradeInstallation(app: ApiApp) {
  app.openapi(upgradeInstallationRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('installation', id)) throw notFound('installation');
    const installation = await upgradeInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id, body: c.req.valid('json') } });
    return c.json({ installation: viewOf(c, installation) }, 202);
  });
}
