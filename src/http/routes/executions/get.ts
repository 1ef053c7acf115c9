import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { showExecution } from '../../../executions/read.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { ExecutionSchema, OrgIdParams } from '../../schemas-directives.ts';

export const getExecutionRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/executions/{id}',
  operationId: 'getExecution',
  tags: ['Executions'],
  summary: 'Get one execution',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. The execution as recorded by its signals.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: { params: OrgIdParams, query: AsOfQuery },
  responses: { 200: jsonResponse(z.object({ execution: ExecutionSchema }), 'The execution'), ...errorResponses() },
});

export function registerGetExecution(app: ApiApp) {
  app.openapi(getExecutionRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('execution', id)) throw notFound('execution');
    return c.json({ execution: await showExecution(c.get('deps').bus.runtime, { ctx: verbContextOf(c), input: { id } }) }, 200);
  });
}
