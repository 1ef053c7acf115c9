/**
 * Verifying an inbound delivery on its raw body, as the package's manifest
 * declares (`webhook.scheme`). Each scheme answers with the parsed body or
 * throws a `DomainError`: `invalid_signature` (missing, malformed or not
 * matching any active secret) or `timestamp_out_of_tolerance` (a signed
 * timestamp too old or too far in the future). Several secrets may be
 * active at once, so a sender can rotate: any of them verifies.
 *
 * The messages name what failed, never a secret or an expected signature.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import Stripe from 'stripe';
import { Webhook } from 'standardwebhooks';
import { DomainError } from '../core/errors.ts';
import type { WebhookSpec } from '../packages/manifest.ts';
import { verifyPubsubPush, type PubsubVerifier } from './pubsub.ts';

/** One delivery as received: the exact bytes, lowercased header names, the arrival time. */
export interface Delivery {
  body: Buffer;
  headers: Readonly<Record<string, string>>;
  /** Milliseconds since the epoch. */
  receivedAt: number;
  /** The hook's own URL: Pub/Sub's default audience. */
  url: string;
}

export interface Verified {
  /** The body, parsed as JSON. */
  body: unknown;
  /** Pub/Sub only: `message.data`, decoded (and parsed when JSON). */
  data?: unknown;
}

export const invalidSignature = (detail: string) => new DomainError('invalid_signature', detail);
export const outOfTolerance = (detail: string) => new DomainError('timestamp_out_of_tolerance', detail);

// Signed, yet not JSON: the sender's fault, and nothing can be read from it.
const notJson = () => new DomainError('invalid_json', 'the delivery body is not JSON');

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw notJson();
  }
}

/**
 * Stripe: the SDK checks `Stripe-Signature` (every `v1` value against every
 * secret, constant time) and the age of `t`. It accepts a timestamp in the
 * future, however far, so that is refused here: a signature made for later
 * would otherwise be replayable until then.
 */
export function verifyStripe(delivery: Delivery, secrets: readonly string[], toleranceS: number): Verified {
  const header = delivery.headers['stripe-signature'];
  if (!header) throw invalidSignature('the Stripe-Signature header is missing');
  let tooOld = false;
  for (const secret of secrets) {
    let event: unknown;
    try {
      event = Stripe.webhooks.constructEvent(delivery.body, header, secret, toleranceS, undefined, delivery.receivedAt);
    } catch (error) {
      if (error instanceof SyntaxError) throw notJson();
      if (!(error instanceof Stripe.errors.StripeSignatureVerificationError)) throw error;
      if (/tolerance/i.test(error.message)) tooOld = true;
      continue;
    }
    const timestamp = stripeTimestamp(header);
    if (timestamp - Math.floor(delivery.receivedAt / 1000) > toleranceS) {
      throw outOfTolerance(`the Stripe-Signature timestamp is more than ${toleranceS} s in the future`);
    }
    return { body: event };
  }
  if (tooOld) throw outOfTolerance(`the Stripe-Signature timestamp is more than ${toleranceS} s old`);
  throw invalidSignature('no Stripe-Signature v1 value matches the body');
}

function stripeTimestamp(header: string): number {
  for (const item of header.split(',')) {
    const [name, value] = item.split('=');
    if (name?.trim() === 't') return Number.parseInt(value ?? '', 10);
  }
  return Number.NaN;
}

/**
 * Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`
 * (space-separated `v1,<base64>` values). The library computes the signature
 * for each secret; the timestamp is judged here against the manifest's
 * tolerance (the library's own check is fixed at 5 minutes).
 */
export function verifyStandardWebhook(delivery: Delivery, secrets: readonly string[], toleranceS: number): Verified {
  const id = delivery.headers['webhook-id'];
  const timestampHeader = delivery.headers['webhook-timestamp'];
  const signatures = delivery.headers['webhook-signature'];
  if (!id || !timestampHeader || !signatures) throw invalidSignature('the webhook-id, webhook-timestamp and webhook-signature headers are required');
  if (!/^\d{1,12}$/.test(timestampHeader)) throw invalidSignature('webhook-timestamp is not Unix seconds');
  const timestamp = Number(timestampHeader);
  const offered = signatures
    .split(' ')
    .map((entry) => entry.split(','))
    .filter(([version, value]) => version === 'v1' && value)
    .map(([, value]) => Buffer.from(value!));
  const payload = delivery.body.toString('utf8');
  const matches = secrets.some((secret) => {
    let signer: Webhook;
    try {
      signer = new Webhook(secret);
    } catch {
      return false;
    }
    const expected = Buffer.from(signer.sign(id, new Date(timestamp * 1000), payload).split(',')[1]!);
    return offered.some((value) => value.length === expected.length && timingSafeEqual(value, expected));
  });
  if (!matches) throw invalidSignature('no webhook-signature v1 value matches the body');
  const age = Math.floor(delivery.receivedAt / 1000) - timestamp;
  if (age > toleranceS) throw outOfTolerance(`webhook-timestamp is more than ${toleranceS} s old`);
  if (-age > toleranceS) throw outOfTolerance(`webhook-timestamp is more than ${toleranceS} s in the future`);
  return { body: parseJson(delivery.body) };
}

type HmacSpec = Extract<WebhookSpec, { scheme: 'hmac' }>['signature'];

/** Generic HMAC-SHA256 of the raw body, read from the configured header after its prefix, in hex or base64. */
export function verifyHmac(delivery: Delivery, secrets: readonly string[], signature: HmacSpec): Verified {
  const header = delivery.headers[signature.header.toLowerCase()];
  if (!header) throw invalidSignature(`the ${signature.header} header is missing`);
  if (!header.startsWith(signature.prefix)) throw invalidSignature(`the ${signature.header} header does not start with ${JSON.stringify(signature.prefix)}`);
  const given = header.slice(signature.prefix.length).trim();
  const decoded = signature.encoding === 'hex' ? decodeHex(given) : decodeBase64(given);
  const matches =
    decoded !== undefined &&
    secrets.some((secret) => {
      const expected = createHmac('sha256', secret).update(delivery.body).digest();
      return expected.length === decoded.length && timingSafeEqual(expected, decoded);
    });
  if (!matches) throw invalidSignature(`the ${signature.header} signature does not match the body`);
  return { body: parseJson(delivery.body) };
}

function decodeHex(text: string): Buffer | undefined {
  return /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : undefined;
}

function decodeBase64(text: string): Buffer | undefined {
  return /^[A-Za-z0-9+/]{43}=?$|^[A-Za-z0-9_-]{43}=?$/.test(text) ? Buffer.from(text.replace(/=$/, ''), text.includes('-') || text.includes('_') ? 'base64url' : 'base64') : undefined;
}

export interface VerifyOptions {
  pubsub: PubsubVerifier;
}

/** Verifies `delivery` as `spec` declares, with the installation's active secrets. */
export async function verifyDelivery(spec: WebhookSpec, delivery: Delivery, secrets: readonly string[], options: VerifyOptions): Promise<Verified> {
  switch (spec.scheme) {
    case 'stripe':
      return verifyStripe(delivery, secrets, spec.tolerance_seconds);
    case 'standard-webhooks':
      return verifyStandardWebhook(delivery, secrets, spec.tolerance_seconds);
    case 'hmac':
      return verifyHmac(delivery, secrets, spec.signature);
    case 'google-pubsub':
      return verifyPubsubPush(options.pubsub, delivery, { audience: spec.audience ?? delivery.url, serviceAccount: spec.service_account }, parseJson);
  }
}
