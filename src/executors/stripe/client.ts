/**
 * Stripe SDK clients, one per API key, pointed at the configured API base
 * (Stripe itself, or a fake on loopback in tests). The cache is keyed by a
 * hash of the key so the map never holds the key as a key, and nothing here
 * logs it.
 */
import { createHash } from 'node:crypto';
import Stripe from 'stripe';

export interface StripeClientOptions {
  /** `protocol://host:port` of the Stripe API; Stripe's own when absent. */
  apiBase?: string;
  timeoutMs: number;
  /** Clients kept at once; the least recently used goes first. */
  maxClients?: number;
}

type Endpoint = Pick<Stripe.StripeConfig, 'host' | 'port' | 'protocol'>;

/** The SDK's host/port/protocol for `apiBase`; its path, if any, is ignored (the SDK always calls /v1/…). */
export function stripeEndpoint(apiBase: string | undefined): Endpoint {
  if (!apiBase) return {};
  const url = new URL(apiBase);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port || (protocol === 'http' ? 80 : 443),
    protocol,
  };
}

export interface StripeClients {
  for(apiKey: string): Stripe;
}

export function createStripeClients({ apiBase, timeoutMs, maxClients = 64 }: StripeClientOptions): StripeClients {
  const endpoint = stripeEndpoint(apiBase);
  const clients = new Map<string, Stripe>();
  return {
    for(apiKey) {
      const fingerprint = createHash('sha256').update(apiKey).digest('base64url');
      const cached = clients.get(fingerprint);
      if (cached) {
        // Re-inserted: Map order is recency order.
        clients.delete(fingerprint);
        clients.set(fingerprint, cached);
        return cached;
      }
      const client = new Stripe(apiKey, {
        ...endpoint,
        // Our executor retries with backoff and one idempotency key per
        // directive; the SDK's own retries would be a second, hidden schedule.
        // (It still repeats a request once on ECONNRESET/EPIPE; that repeat
        // carries our key, so Stripe replays rather than acts twice.)
        maxNetworkRetries: 0,
        timeout: timeoutMs,
        telemetry: false,
        appInfo: { name: 'signalbus' },
      });
      clients.set(fingerprint, client);
      if (clients.size > maxClients) clients.delete(clients.keys().next().value!);
      return client;
    },
  };
}
