import { createRoute, z } from '@hono/zod-openapi';
import { listInstallationDeliveries } from '../../../webhooks/deliveries.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { OrgIdParams, PageQuery } from '../../schemas-directives.ts';

const DeliverySchema = z
  .object({
    id: z.string(),
    received_at: z.string(),
    status: z.number().int().describe('The HTTP status the sender was answered'),
    outcome: z.enum(['accepted', 'deduplicated', 'ignored', 'rejected']),
    reason: z.string().nullable().describe('The problem code of a rejection (`invalid_signature`, …), or why nothing was recorded'),
    detail: z.string().nullable(),
    body_sha256: z.string().nullable().describe('Hex SHA-256 of the body; null when it was refused unread'),
    body_bytes: z.number().int().nullable(),
    event_id: z.string().nullable().describe("The provider's event id, when it was read"),
    signal_id: z.string().nullable(),
  })
  .openapi('WebhookDelivery');

export const listDeliveriesRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/installations/{id}/deliveries',
  operationId: 'listInstallationDeliveries',
  tags: ['Installations'],
  summary: "An installation's inbound webhook deliveries, newest first",
  description: 'Role: admin. Every delivery to the installation\'s hook, accepted or rejected: time, status, reason and body hash — never the body or a secret. The log keeps the newest deliveries (SIGNALBUS_HOOK_DELIVERY_LOG_SIZE).',
  middleware: [requireAccess('org:admin')] as const,
  request: { params: OrgIdParams, query: PageQuery },
  responses: { 200: jsonResponse(z.object({ data: z.array(DeliverySchema), next_cursor: z.string().nullable() }), 'Deliveries, newest first'), ...errorResponses(422) },
});

export function registerListDeliveries(app: ApiApp) {
  app.openapi(listDeliveriesRoute, async (c) => {
    const { id } = c.req.valid('param');
    const { after, limit } = c.req.valid('query');
    const page = await listInstallationDeliveries(c.get('deps').hooks, { ctx: verbContextOf(c), input: { installationId: id, after, limit } });
    return c.json(page, 200);
  });
}
