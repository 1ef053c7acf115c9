import { createRoute, z } from '@hono/zod-openapi';
import { emitBatch } from '../../../signals/emit.ts';
import { emitContextOf, requireAccess, type ApiApp } from '../../context.ts';
import { limitBody } from '../../body.ts';
import { errorResponses, jsonBody, jsonResponse, OrgParams, SignalSchema } from '../../schemas.ts';

const BatchInput = z.object({
  // Items are validated one by one so that one bad item does not fail the rest.
  signals: z.array(z.unknown()).min(1).max(1000),
});

const BatchResult = z.object({
  status: z.enum(['created', 'deduplicated', 'conflict', 'invalid']),
  signal: SignalSchema.optional(),
  error: z
    .object({
      code: z.string(),
      message: z.string(),
      errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    })
    .optional(),
});

export const emitBatchRoute = createRoute({
  method: 'post',
  path: '/v1/orgs/{org}/signals/batch',
  operationId: 'emitSignalBatch',
  tags: ['Signals'],
  summary: 'Emit up to 1000 signals; created ones commit together',
  description:
    'Role: operator or above. Each item is created, deduplicated, a conflict or invalid, reported in input order; the created signals commit in one transaction. ' +
    'The body is limited to SIGNALBUS_MAX_BATCH_BYTES (default 2 MiB, about 2 KiB a signal for 1,000): send larger ' +
    'payloads one per request or in smaller batches. Bodies nested deeper than 160 levels are refused whole (422).',
  middleware: [requireAccess('org:operate'), limitBody((deps) => deps.maxBatchBytes)] as const,
  request: { params: OrgParams, body: jsonBody(BatchInput) },
  responses: {
    200: jsonResponse(z.object({ results: z.array(BatchResult) }), 'One result per input, in input order'),
    ...errorResponses(400, 413, 415, 422),
  },
});

export function registerEmitBatch(app: ApiApp) {
  app.openapi(emitBatchRoute, async (c) => {
    const results = await emitBatch(c.get('deps').bus.emit, { ctx: emitContextOf(c), inputs: c.req.valid('json').signals });
    return c.json({ results }, 200);
  });
}
