import { createRoute, z } from '@hono/zod-openapi';
import { receiveHook } from '../../../webhooks/receive.ts';
import { readRawBody } from '../../body.ts';
import { clientAddress, publicBase, rateLimited, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse } from '../../schemas.ts';
import { cleanTraceparent } from '../../../signals/model.ts';

const HookAccepted = z
  .object({
    signal_id: z.string().nullable().describe('The signal recorded; null when the package takes no event from this delivery'),
    deduplicated: z.boolean().describe('true when the provider sent this event before: the signal is the original'),
  })
  .openapi('HookAccepted');

// No key, so no role (403); 401 is about the signature.
const hookErrors = Object.fromEntries(
  Object.entries(errorResponses(400, 409, 413, 422, 503))
    .filter(([status]) => status !== '403')
    .map(([status, response]) => [status, status === '401' ? { ...response, description: '`invalid_signature` or `timestamp_out_of_tolerance`' } : response]),
);

export const receiveHookRoute = createRoute({
  method: 'post',
  path: '/v1/hooks/{installation_id}',
  operationId: 'receiveHook',
  tags: ['Installations'],
  summary: "Receive a provider's webhook for an installation",
  description:
    "No API key: the delivery is verified on its raw body as the installation's package declares (Stripe-Signature, Standard Webhooks, HMAC-SHA256, or a Pub/Sub OIDC token). " +
    '200 after the signal commits; the same provider event again answers the original with `deduplicated: true`. ' +
    '401 `invalid_signature` or `timestamp_out_of_tolerance`; 404 for an unknown, disabled or uninstalled installation; 413 over the size limit; 429 over the installation\'s rate. ' +
    "Every delivery is kept in the installation's delivery log; a rejected one writes no signal.",
  security: [],
  request: {
    params: z.object({ installation_id: z.string().max(64).openapi({ param: { name: 'installation_id', in: 'path' } }) }),
    body: { required: true, content: { 'application/json': { schema: z.unknown() } } },
  },
  responses: { 200: jsonResponse(HookAccepted, 'Recorded (or, with signal_id null, acknowledged and not taken)'), ...hookErrors },
});

export function registerReceiveHook(app: ApiApp) {
  // Not `app.openapi`: its validator would parse the body before the signature is checked on its bytes.
  app.openAPIRegistry.registerPath(receiveHookRoute);
  app.post('/v1/hooks/:installation_id', async (c) => {
    const deps = c.get('deps');
    const answer = await receiveHook(deps.hooks, {
      input: {
        installationId: c.req.param('installation_id'),
        headers: c.req.header(),
        // Behind a proxy the sender called the public URL, not this request's: Pub/Sub's audience is that one.
        url: deps.publicUrl ? `${publicBase(c)}${new URL(c.req.url).pathname}${new URL(c.req.url).search}` : c.req.url,
        address: clientAddress(c, deps.clientAddressHeader),
        requestId: c.get('requestId'),
        traceparent: cleanTraceparent(c.req.header('traceparent')),
        readBody: (maxBytes) => readRawBody(c, maxBytes),
      },
    });
    if (!answer.accepted) return rateLimited(c, answer.rateLimited);
    return c.json({ signal_id: answer.signal_id, deduplicated: answer.deduplicated }, 200);
  });
}
