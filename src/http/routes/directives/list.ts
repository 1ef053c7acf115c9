import { createRoute, z } from '@hono/zod-openapi';
import { DIRECTIVE_STATUSES } from '../../../directives/model.ts';
import { showDirectives } from '../../../directives/store.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';
import { DirectiveSchema, PageQuery } from '../../schemas-directives.ts';

export const listDirectivesRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/directives',
  operationId: 'listDirectives',
  tags: ['Directives'],
  summary: 'List directives in proposal order',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. Filter by `status` and `kind`; pages by cursor.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: {
    params: OrgParams,
    query: PageQuery.merge(AsOfQuery).extend({ status: z.enum(DIRECTIVE_STATUSES).optional(), kind: z.string().max(200).optional() }),
  },
  responses: {
    200: jsonResponse(z.object({ data: z.array(DirectiveSchema), next_cursor: z.string().nullable() }), 'A page of directives'),
    ...errorResponses(422),
  },
});

export function registerListDirectives(app: ApiApp) {
  app.openapi(listDirectivesRoute, async (c) => {
    const { status, kind, after, limit } = c.req.valid('query');
    const page = await showDirectives(c.get('deps').bus.directives, {
      ctx: verbContextOf(c),
      input: {
        limit,
        ...(status ? { status } : {}),
        ...(kind ? { kind } : {}),
        ...(after ? { after } : {}),
      },
    });
    return c.json(page, 200);
  });
}
