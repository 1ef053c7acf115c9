import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { retryExecution } from '../../../handlers/retry-execution.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonResponse, optionalJsonBody } from '../../schemas.ts';
import { DecisionReasonInput, ExecutionSchema, OrgIdParams } from '../../schemas-directives.ts';

export const retryExecutionRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/executions/{id}/retry',
  operationId: 'retryExecution',
  tags: ['Executions'],
  summary: 'Run a failed handler execution once more',
  description: 'Role: operator or above. An execution that cannot run again is 409; outputs keep their deterministic keys, so a retried run writes nothing twice.',
  middleware: [requireAccess('org:operate'), limitBody(() => 64 * 1024)] as const,
  request: { params: OrgIdParams, body: optionalJsonBody(DecisionReasonInput) },
  responses: {
    200: jsonResponse(z.object({ execution: ExecutionSchema }), 'Queued for another attempt'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerRetryExecution(app: ApiApp) {
  app.openapi(retryExecutionRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('execution', id)) throw notFound('execution');
    const execution = await retryExecution(c.get('deps').bus, { ctx: verbContextOf(c), input: { id, reason: c.req.valid('json').reason ?? null } });
    return c.json({ execution }, 200);
  });
}
