/**
 * webhook — the `webhook.post` executor: signed JSON POSTs (Standard
 * Webhooks) to URLs named in directive params. Private, loopback, link-local
 * and metadata targets are refused unless the deployment allows private
 * targets, and the check is made on the address the socket connects to.
 */
export { createWebhookExecutor, originOf, SIGNING_SECRET, WEBHOOK_POST, WebhookPostParams, type WebhookExecutorOptions } from './executor.ts';
export { classifyAddress, refusedHost, refusedHostname, type AddressVerdict } from './address-policy.ts';
export { createGuardedLookup, systemResolver, TargetRefusedError, type ResolvedAddress, type Resolver } from './guarded-lookup.ts';
