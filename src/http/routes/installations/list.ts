import { createRoute, z } from '@hono/zod-openapi';
import { INSTALLATION_STATUSES } from '../../../packages/installation-model.ts';
import { listInstallations } from '../../../packages/installation-read.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';
import { PageQuery } from '../../schemas-directives.ts';
import { InstallationSchema } from '../../schemas-installations.ts';
import { viewOf } from './view.ts';

export const listInstallationsRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/installations',
  operationId: 'listInstallations',
  tags: ['Installations'],
  summary: "The org's installations in creation order",
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized them. Filter by `status` and `package`; pages by cursor.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: {
    params: OrgParams,
    query: PageQuery.extend({ status: z.enum(INSTALLATION_STATUSES).optional(), package: z.string().max(40).optional() }).extend(AsOfQuery.shape),
  },
  responses: {
    200: jsonResponse(z.object({ data: z.array(InstallationSchema), next_cursor: z.string().nullable() }), 'A page of installations'),
    ...errorResponses(422),
  },
});

export function registerListInstallations(app: ApiApp) {
  app.openapi(listInstallationsRoute, async (c) => {
    const { status, package: name, after, limit } = c.req.valid('query');
    const page = await listInstallations(c.get('deps').bus.installations, {
      ctx: verbContextOf(c),
      input: { limit, ...(status ? { status } : {}), ...(name ? { package: name } : {}), ...(after ? { after } : {}) },
    });
    return c.json({ data: page.data.map((row) => viewOf(c, row)), next_cursor: page.next_cursor }, 200);
  });
}
