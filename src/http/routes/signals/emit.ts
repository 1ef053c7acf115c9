import { createRoute, z } from '@hono/zod-openapi';
import { emit } from '../../../signals/emit.ts';
import { EmitSignalBody } from '../../../signals/model.ts';
import { emitContextOf, requireAccess, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams, SignalSchema } from '../../schemas.ts';

const EmitResponse = z.object({ signal: SignalSchema, deduplicated: z.boolean() });

export const emitSignalRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/signals',
  operationId: 'emitSignal',
  tags: ['Signals'],
  summary: 'Emit a signal (deduplicated by dedupe_key or Idempotency-Key)',
  description: 'Role: operator or above. 201 with the new signal; the same key and content again answers 200 with the original and `deduplicated: true`; the same key with other content is 409 `idempotency_conflict`. System types are 422 `reserved_type`.',
  middleware: [requireAccess('org:operate'), limitBody((deps) => deps.maxPayloadBytes + 64 * 1024)] as const,
  request: {
    params: OrgParams,
    headers: z.object({ 'idempotency-key': z.string().min(1).max(256).optional() }),
    body: jsonBody(EmitSignalBody),
  },
  responses: {
    201: jsonResponse(EmitResponse, 'Appended'),
    200: jsonResponse(EmitResponse, 'Already stored under this key; nothing written'),
    ...errorResponses(400, 409, 413, 415, 422),
  },
});

export function registerEmitSignal(app: ApiApp) {
  app.openapi(emitSignalRoute, async (c) => {
    const result = await emit(c.get('deps').bus.emit, { ctx: emitContextOf(c), input: c.req.valid('json') });
    return c.json(result, result.deduplicated ? 200 : 201);
  });
}
