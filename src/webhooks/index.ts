/**
 * Inbound webhooks (ARCHITECTURE.md, Inbound webhooks): a provider's delivery
 * to `/v1/hooks/:installation_id`, verified on its raw body as the
 * installation's package declares, read into an event, and recorded as a
 * deduplicated signal; every delivery, accepted or not, lands in the
 * installation's bounded delivery log.
 */
export { verifyDelivery, type Delivery, type Verified } from './verify.ts';
export { createPubsubVerifier, type PubsubVerifier, type PubsubVerifierOptions } from './pubsub.ts';
export { readEvent, fromCel, type InboundEvent } from './read-event.ts';
export { receiveHook, type HookAnswer, type HookDeps, type HookRequest } from './receive.ts';
export { createDeliveryLog, type DeliveryLog, type DeliveryOutcome, type DeliveryView } from './delivery-log.ts';
export { listInstallationDeliveries } from './deliveries.ts';
