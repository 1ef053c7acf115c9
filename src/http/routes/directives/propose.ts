import { createRoute, z } from '@hono/zod-openapi';
import { ProposeDirectiveInput } from '../../../directives/model.ts';
import { proposeDirective } from '../../../directives/propose.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams } from '../../schemas.ts';
import { DirectiveSchema } from '../../schemas-directives.ts';

const DirectiveResponse = z.object({ directive: DirectiveSchema });

export const proposeDirectiveRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/directives',
  operationId: 'proposeDirective',
  tags: ['Directives'],
  summary: 'Propose a directive; policy decides it at once (allow, deny or require approval)',
  description: 'Role: operator or above. Policy applies exactly as for directives proposed by handlers; a repeated `idempotency_key` refers to the same directive.',
  middleware: [requireAccess('org:operate'), limitBody((deps) => deps.maxPayloadBytes + 64 * 1024)] as const,
  request: {
    params: OrgParams,
    headers: z.object({ 'idempotency-key': z.string().min(1).max(256).optional().describe('Used when the body names no idempotency_key') }),
    body: jsonBody(ProposeDirectiveInput),
  },
  responses: {
    201: jsonResponse(DirectiveResponse, 'Proposed and decided'),
    200: jsonResponse(DirectiveResponse, 'Already proposed under this idempotency key; nothing written'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerProposeDirective(app: ApiApp) {
  app.openapi(proposeDirectiveRoute, async (c) => {
    const body = c.req.valid('json');
    const idempotencyKey = body.idempotency_key ?? c.req.valid('header')['idempotency-key'];
    const { directive, created } = await proposeDirective(c.get('deps').bus.directives, {
      ctx: verbContextOf(c),
      input: { ...body, ...(idempotencyKey ? { idempotency_key: idempotencyKey } : {}) },
    });
    return c.json({ directive }, created ? 201 : 200);
  });
}
