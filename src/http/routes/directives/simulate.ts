import { createRoute } from '@hono/zod-openapi';
import { ProposeDirectiveInput } from '../../../directives/model.ts';
import { simulateDirective } from '../../../directives/propose.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams } from '../../schemas.ts';
import { SimulationSchema } from '../../schemas-directives.ts';

export const simulateDirectiveRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/directives/simulate',
  operationId: 'simulateDirective',
  tags: ['Directives'],
  summary: 'What policy would decide for a directive now, with its estimated cost; writes nothing',
  description: 'Role: operator or above. Evaluates the policy with the current guard counters and answers the decision, the deciding rule and the estimated cost.',
  middleware: [requireAccess('org:operate'), limitBody((deps) => deps.maxPayloadBytes + 64 * 1024)] as const,
  request: { params: OrgParams, body: jsonBody(ProposeDirectiveInput.pick({ kind: true, params: true })) },
  responses: { 200: jsonResponse(SimulationSchema, 'The decision'), ...errorResponses(400, 413, 415, 422) },
});

export function registerSimulateDirective(app: ApiApp) {
  app.openapi(simulateDirectiveRoute, async (c) => {
    const simulation = await simulateDirective(c.get('deps').bus.directives, { ctx: verbContextOf(c), input: c.req.valid('json') });
    return c.json(simulation, 200);
  });
}
