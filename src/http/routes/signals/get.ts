import { createRoute, z } from '@hono/zod-openapi';
import { notFound } from '../../../core/errors.ts';
import { isId } from '../../../core/ids.ts';
import { showSignal } from '../../../signals/read.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams, SignalSchema } from '../../schemas.ts';

export const getSignalRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/signals/{id}',
  operationId: 'getSignal',
  tags: ['Signals'],
  summary: 'Get one signal',
  description: 'Role: viewer or above. The signal with every stored field.',
  middleware: [requireAccess('org:read')] as const,
  request: { params: OrgParams.extend({ id: z.string().max(64) }) },
  responses: { 200: jsonResponse(z.object({ signal: SignalSchema }), 'The signal'), ...errorResponses() },
});

export function registerGetSignal(app: ApiApp) {
  app.openapi(getSignalRoute, async (c) => {
    const { id } = c.req.valid('param');
    if (!isId('signal', id)) throw notFound('signal');
    return c.json({ signal: await showSignal(c.get('deps').bus.emit, { ctx: verbContextOf(c), input: { id } }) }, 200);
  });
}
