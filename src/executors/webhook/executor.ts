/**
 * `webhook.post`: a signed JSON POST following Standard Webhooks. The
 * directive id is the `webhook-id` on every attempt, so a receiver that
 * dedupes by it (the Standard Webhooks contract) sees one effect however
 * often we redeliver; the timestamp and signature are fresh per attempt.
 */
import { Webhook } from 'standardwebhooks';
import { z } from 'zod';
import type { ExecuteResult, Executor } from '../registry.ts';
import { refusedHost } from './address-policy.ts';
import { createDeliveryAgents, deliver, type DeliveryOutcome } from './deliver.ts';
import { createGuardedLookup, systemResolver, type Resolver } from './guarded-lookup.ts';
import { parseRetryAfterMs } from './retry-after.ts';

export const WEBHOOK_POST = 'webhook.post';
export const SIGNING_SECRET = 'webhook_signing_secret';

/**
 * Headers a caller may not set: the ones we own (framing, signature), the
 * hop-by-hop ones, and credentials — params are recorded in signals, and a
 * secret must live in the vault; the signature authenticates the sender.
 */
const RESERVED_HEADERS = new Set([
  'host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te',
  'trailer', 'trailers', 'upgrade', 'expect', 'proxy-authenticate', 'proxy-authorization', 'authorization', 'cookie',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What Node accepts in a header value: no CR, LF or other control characters. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

const HeaderName = z
  .string()
  .min(1)
  .max(100)
  .regex(HEADER_NAME, 'must be an HTTP header name')
  .refine((name) => !RESERVED_HEADERS.has(name.toLowerCase()) && !name.toLowerCase().startsWith('webhook-'), {
    message: 'is set by signalbus or not allowed (host, content-*, webhook-*, hop-by-hop, credentials)',
  });

const WebhookUrl = z
  .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
  .max(2048)
  .refine((raw) => {
    const url = new URL(raw);
    return url.username === '' && url.password === '';
  }, 'must not carry credentials');

export const WebhookPostParams = z
  .object({
    url: WebhookUrl,
    body: z.json(),
    headers: z
      .record(HeaderName, z.string().max(4096).regex(HEADER_VALUE, 'must not contain control characters'))
      .refine((headers) => Object.keys(headers).length <= 32, 'at most 32 headers')
      .optional(),
    /** Response deadline for this webhook, in ms. */
    timeout_ms: z.number().int().min(100).max(60_000).optional(),
  })
  .strict();
export type WebhookPostParams = z.infer<typeof WebhookPostParams>;

export interface WebhookExecutorOptions {
  /** Let webhooks reach loopback, private and link-local addresses (SIGNALBUS_ALLOW_PRIVATE_TARGETS). */
  allowPrivateTargets: boolean;
  /** Deadline for DNS and the TCP connect. */
  connectTimeoutMs?: number;
  /** Deadline from connect to the response headers, unless the directive sets `timeout_ms`. */
  responseTimeoutMs?: number;
  /** Resolves host names; the system resolver by default. */
  lookup?: Resolver;
  now?: () => Date;
  circuitFailureThreshold?: number;
  circuitCooldownMs?: number;
}

/** scheme://host:port with the default port spelled out, so both spellings share one breaker. */
export function originOf(raw: string): string {
  try {
    const url = new URL(raw);
    const port = url.port || (url.protocol === 'https:' ? '443' : '80');
    return `${url.protocol}//${url.hostname}:${port}`;
  } catch {
    return raw;
  }
}

const permanent = (code: string, message: string): ExecuteResult => ({ outcome: 'permanent', error: { code, message } });

export function createWebhookExecutor(options: WebhookExecutorOptions): Executor<WebhookPostParams> {
  const {
    allowPrivateTargets,
    connectTimeoutMs = 5_000,
    responseTimeoutMs = 15_000,
    lookup = systemResolver,
    now = () => new Date(),
    circuitFailureThreshold = 5,
    circuitCooldownMs = 30_000,
  } = options;
  const guardedLookup = createGuardedLookup({ resolve: lookup, allowPrivateTargets });
  const agents = createDeliveryAgents();

  return {
    kinds: [WEBHOOK_POST],
    params: WebhookPostParams,
    estimateCostUsd: () => 0,
    honorsIdempotencyKey: true,
    // Standard Webhooks receivers deduplicate by webhook-id, the directive id.
    claimBeforeCall: false,
    circuit: {
      key: (_kind, params) => originOf(params.url),
      failureThreshold: circuitFailureThreshold,
      cooldownMs: circuitCooldownMs,
    },
    async execute({ params, idempotencyKey, credentials }) {
      const url = new URL(params.url);
      // IP literals are judged here: Node connects to them without a lookup.
      if (!allowPrivateTargets) {
        const reason = refusedHost(url.hostname);
        if (reason) return permanent('ssrf_refused', `refused to deliver to ${url.host}: ${reason}`);
      }
      const secret = await credentials.get(SIGNING_SECRET);
      if (!secret) return permanent('missing_credential', `the ${SIGNING_SECRET} credential is not set`);
      let signer: Webhook;
      try {
        signer = new Webhook(secret);
      } catch {
        return permanent('invalid_credential', `the ${SIGNING_SECRET} credential is not a whsec_ secret (base64 after the prefix)`);
      }

      const webhookId = idempotencyKey;
      const timestamp = now();
      const body = JSON.stringify(params.body);
      const outcome = await deliver({
        url,
        body,
        headers: {
          'user-agent': 'signalbus-webhooks',
          ...params.headers,
          'content-type': 'application/json',
          'webhook-id': webhookId,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': signer.sign(webhookId, timestamp, body),
        },
        lookup: guardedLookup,
        agents,
        connectTimeoutMs,
        responseTimeoutMs: params.timeout_ms ?? responseTimeoutMs,
      });
      return outcomeOf(outcome, { host: url.host, webhookId, now });
    },
  };
}

/** Only 2xx succeeds; 429, 5xx and transport failures are retried; everything else is final. */
function outcomeOf(outcome: DeliveryOutcome, { host, webhookId, now }: { host: string; webhookId: string; now: () => Date }): ExecuteResult {
  if (outcome.kind === 'refused') return permanent('ssrf_refused', `refused to deliver to ${host}: ${outcome.message}`);
  if (outcome.kind === 'invalid') return permanent('invalid_request', outcome.message);
  if (outcome.kind === 'failed') return { outcome: 'retryable', error: { code: outcome.code, message: outcome.message } };
  const { status } = outcome;
  if (status >= 200 && status < 300) return { outcome: 'succeeded', result: { status, url_host: host, webhook_id: webhookId } };
  if (status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfterMs(outcome.headers['retry-after'], now());
    return {
      outcome: 'retryable',
      error: { code: status === 429 ? 'webhook_rate_limited' : 'webhook_server_error', message: `${host} answered ${status}` },
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  }
  if (status >= 300 && status < 400) {
    return permanent('webhook_redirected', `${host} answered ${status}; redirects are not followed, configure the final URL`);
  }
  return permanent('webhook_rejected', `${host} answered ${status}`);
}
