import { createRoute, z } from '@hono/zod-openapi';
import { EXECUTION_STATUSES } from '../../../executions/model.ts';
import { showExecutions } from '../../../executions/read.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';
import { ExecutionSchema, PageQuery } from '../../schemas-directives.ts';

export const listExecutionsRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/executions',
  operationId: 'listExecutions',
  tags: ['Executions'],
  summary: 'List executions (handler runs and directive runs) in creation order',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. Filter by `status` and `handler`; pages by cursor.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: {
    params: OrgParams,
    query: PageQuery.merge(AsOfQuery).extend({
      status: z.enum(EXECUTION_STATUSES).optional(),
      handler: z.string().max(300).optional().describe('Handler id, or `executor:<kind>`'),
    }),
  },
  responses: {
    200: jsonResponse(z.object({ data: z.array(ExecutionSchema), next_cursor: z.string().nullable() }), 'A page of executions'),
    ...errorResponses(422),
  },
});

export function registerListExecutions(app: ApiApp) {
  app.openapi(listExecutionsRoute, async (c) => {
    const { status, handler, after, limit } = c.req.valid('query');
    const page = await showExecutions(c.get('deps').bus.runtime, {
      ctx: verbContextOf(c),
      input: {
        limit,
        ...(status ? { status } : {}),
        ...(handler ? { handler } : {}),
        ...(after ? { after } : {}),
      },
    });
    return c.json(page, 200);
  });
}
