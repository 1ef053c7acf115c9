import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { showTrace } from '../../../handlers/trace.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { OrgIdParams, TraceSchema } from '../../schemas-directives.ts';

export const traceSignalRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/signals/{id}/trace',
  operationId: 'traceSignal',
  tags: ['Signals'],
  summary: 'The causation tree of a signal: handler runs, derived signals, directives with decision and status',
  description: 'Role: viewer or above. Follows causation from the signal: the handler executions it started, the signals they derived and the directives they proposed, recursively.',
  middleware: [requireAccess('org:read')] as const,
  request: { params: OrgIdParams },
  responses: { 200: jsonResponse(z.object({ trace: TraceSchema }), 'The trace'), ...errorResponses() },
});

export function registerTraceSignal(app: ApiApp) {
  app.openapi(traceSignalRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('signal', id)) throw notFound('signal');
    return c.json({ trace: await showTrace(c.get('deps').bus.runtime, { ctx: verbContextOf(c), input: { id } }) }, 200);
  });
}
