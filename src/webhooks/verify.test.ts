import { createHmac, createSign, generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../core/errors.ts';
import { createPubsubVerifier, type PubsubVerifier } from './pubsub.ts';
import { verifyDelivery, verifyHmac, verifyStandardWebhook, verifyStripe, type Delivery } from './verify.ts';

const NOW = 1_750_000_000_000;
const nowS = NOW / 1000;
const SECRET = 'whsec_test_current';
const OLD_SECRET = 'whsec_test_previous';
const BODY = JSON.stringify({ id: 'evt_1', type: 'charge.succeeded', created: nowS, data: { object: { id: 'ch_1', amount: 500 } } });

const delivery = (body: string, headers: Record<string, string>, receivedAt = NOW): Delivery => ({
  body: Buffer.from(body),
  headers,
  receivedAt,
  url: 'https://hooks.example.test/v1/hooks/ins_1',
});

const stripeHeader = (body: string, secret: string, timestamp = nowS) =>
  Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp });

function rejection(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof DomainError) return error.code;
    throw error;
  }
  return 'accepted';
}

async function rejectionOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error.code;
    throw error;
  }
  return 'accepted';
}

describe('Stripe signatures', () => {
  const check = (body: string, headers: Record<string, string>, secrets = [SECRET]) =>
    rejection(() => verifyStripe(delivery(body, headers), secrets, 300));

  it('accepts a valid delivery and returns the parsed event', () => {
    const verified = verifyStripe(delivery(BODY, { 'stripe-signature': stripeHeader(BODY, SECRET) }), [SECRET], 300);
    expect(verified.body).toMatchObject({ id: 'evt_1', type: 'charge.succeeded' });
  });

  it.each([
    ['wrong secret', BODY, () => stripeHeader(BODY, 'whsec_someone_else'), 'invalid_signature'],
    ['tampered body', BODY.replace('500', '5000'), () => stripeHeader(BODY, SECRET), 'invalid_signature'],
    ['re-serialized JSON', JSON.stringify(JSON.parse(BODY), null, 2), () => stripeHeader(BODY, SECRET), 'invalid_signature'],
    ['a timestamp too old', BODY, () => stripeHeader(BODY, SECRET, nowS - 301), 'timestamp_out_of_tolerance'],
    ['a timestamp in the future', BODY, () => stripeHeader(BODY, SECRET, nowS + 301), 'timestamp_out_of_tolerance'],
    ['a garbled header', BODY, () => 'v1=abc', 'invalid_signature'],
  ])('%s → %s', (_name, body, header, expected) => {
    expect(check(body, { 'stripe-signature': header() })).toBe(expected);
  });

  it('refuses a missing header', () => {
    expect(check(BODY, {})).toBe('invalid_signature');
  });

  it('accepts a timestamp slightly in the future, within tolerance', () => {
    expect(check(BODY, { 'stripe-signature': stripeHeader(BODY, SECRET, nowS + 60) })).toBe('accepted');
  });

  it('accepts when any of several v1 values matches (Stripe signs with both secrets while rolling)', () => {
    const mine = stripeHeader(BODY, SECRET).split(',').find((part) => part.startsWith('v1='))!;
    const other = stripeHeader(BODY, 'whsec_other').split(',').find((part) => part.startsWith('v1='))!;
    expect(check(BODY, { 'stripe-signature': `t=${nowS},${other},${mine}` })).toBe('accepted');
    expect(check(BODY, { 'stripe-signature': `t=${nowS},${other},v1=deadbeef` })).toBe('invalid_signature');
  });

  it('accepts a delivery signed with a secret being rotated out, while both are active', () => {
    const header = { 'stripe-signature': stripeHeader(BODY, OLD_SECRET) };
    expect(check(BODY, header, [SECRET, OLD_SECRET])).toBe('accepted');
    expect(check(BODY, header, [SECRET])).toBe('invalid_signature');
  });

  it('refuses a signed body that is not JSON as invalid_json', () => {
    expect(check('not json', { 'stripe-signature': stripeHeader('not json', SECRET) })).toBe('invalid_json');
  });
});

describe('Standard Webhooks', () => {
  // The test vector of the Standard Webhooks specification.
  const VECTOR = {
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    timestamp: 1614265330,
    body: '{"test": 2432232314}',
    signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  };
  const headers = (overrides: Record<string, string> = {}) => ({
    'webhook-id': VECTOR.id,
    'webhook-timestamp': String(VECTOR.timestamp),
    'webhook-signature': VECTOR.signature,
    ...overrides,
  });
  const at = VECTOR.timestamp * 1000;
  const check = (hdrs: Record<string, string>, secrets = [VECTOR.secret], receivedAt = at, body = VECTOR.body) =>
    rejection(() => verifyStandardWebhook(delivery(body, hdrs, receivedAt), secrets, 300));

  it('verifies the specification’s test vector', () => {
    expect(verifyStandardWebhook(delivery(VECTOR.body, headers(), at), [VECTOR.secret], 300).body).toEqual({ test: 2432232314 });
  });

  it('accepts the vector among several signatures and secrets', () => {
    expect(check(headers({ 'webhook-signature': `v1,bm9wZQ== ${VECTOR.signature}` }))).toBe('accepted');
    expect(check(headers(), ['whsec_dGhlIG5ldyBvbmU=', VECTOR.secret])).toBe('accepted');
  });

  it.each([
    ['another secret', headers(), ['whsec_dGhlIG5ldyBvbmU='], at, VECTOR.body, 'invalid_signature'],
    ['a tampered body', headers(), [VECTOR.secret], at, '{"test": 2432232315}', 'invalid_signature'],
    ['another message id', headers({ 'webhook-id': 'msg_other' }), [VECTOR.secret], at, VECTOR.body, 'invalid_signature'],
    ['a v2 signature only', headers({ 'webhook-signature': VECTOR.signature.replace('v1,', 'v2,') }), [VECTOR.secret], at, VECTOR.body, 'invalid_signature'],
    ['no signature header', { 'webhook-id': VECTOR.id, 'webhook-timestamp': String(VECTOR.timestamp) }, [VECTOR.secret], at, VECTOR.body, 'invalid_signature'],
    ['a stale timestamp', headers(), [VECTOR.secret], at + 301_000, VECTOR.body, 'timestamp_out_of_tolerance'],
    ['a future timestamp', headers(), [VECTOR.secret], at - 301_000, VECTOR.body, 'timestamp_out_of_tolerance'],
  ])('%s → %s', (_name, hdrs, secrets, receivedAt, body, expected) => {
    expect(check(hdrs, secrets, receivedAt, body)).toBe(expected);
  });
});

describe('generic HMAC-SHA256', () => {
  const spec = { header: 'X-Signature-256', algorithm: 'sha256' as const, encoding: 'hex' as const, prefix: 'sha256=' };
  const hex = (body: string, secret: string) => createHmac('sha256', secret).update(body).digest('hex');

  it('accepts the configured header, prefix and encoding, with either active secret', () => {
    const headers = { 'x-signature-256': `sha256=${hex(BODY, 'old')}` };
    expect(rejection(() => verifyHmac(delivery(BODY, headers), ['new', 'old'], spec))).toBe('accepted');
  });

  it('reads base64 without a prefix', () => {
    const b64 = { ...spec, header: 'X-Hub-Sig', encoding: 'base64' as const, prefix: '' };
    const signature = createHmac('sha256', 'k').update(BODY).digest('base64');
    expect(rejection(() => verifyHmac(delivery(BODY, { 'x-hub-sig': signature }), ['k'], b64))).toBe('accepted');
  });

  it.each([
    ['a missing header', {}],
    ['a missing prefix', { 'x-signature-256': hex(BODY, 'k') }],
    ['another secret', { 'x-signature-256': `sha256=${hex(BODY, 'other')}` }],
    ['a tampered body', { 'x-signature-256': `sha256=${hex(`${BODY} `, 'k')}` }],
    ['a truncated signature', { 'x-signature-256': `sha256=${hex(BODY, 'k').slice(0, 40)}` }],
  ])('%s → invalid_signature', (_name, headers) => {
    expect(rejection(() => verifyHmac(delivery(BODY, headers), ['k'], spec))).toBe('invalid_signature');
  });
});

describe('Google Pub/Sub push', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const KID = 'test-key-1';
  const AUDIENCE = 'https://hooks.example.test/v1/hooks/ins_1';
  const ACCOUNT = 'pusher@project.iam.gserviceaccount.com';
  let server: Server;
  let verifier: PubsubVerifier;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ [KID]: publicKey.export({ type: 'spki', format: 'pem' }) }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    verifier = createPubsubVerifier({ certsUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/certs` });
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  function token(claims: Record<string, unknown>, kid = KID): string {
    const iat = Math.floor(Date.now() / 1000);
    const head = b64({ alg: 'RS256', typ: 'JWT', kid });
    const body = b64({ iss: 'https://accounts.google.com', aud: AUDIENCE, iat, exp: iat + 3600, email: ACCOUNT, email_verified: true, ...claims });
    const signature = createSign('RSA-SHA256').update(`${head}.${body}`).sign(privateKey).toString('base64url');
    return `${head}.${body}.${signature}`;
  }
  const push = JSON.stringify({
    message: { data: Buffer.from(JSON.stringify({ order: 7 })).toString('base64'), messageId: '123', publishTime: '2025-01-01T00:00:00Z' },
    subscription: 'projects/p/subscriptions/s',
  });
  const spec = (overrides = {}) => ({
    scheme: 'google-pubsub' as const,
    audience: AUDIENCE,
    service_account: ACCOUNT,
    event: { id: 'body.message.messageId', type: "'x.y'" },
    ...overrides,
  });
  const verify = (authorization: string | undefined, overrides = {}) =>
    verifyDelivery(spec(overrides), { ...delivery(push, authorization ? { authorization } : {}), receivedAt: Date.now() }, [], { pubsub: verifier });

  it('accepts a token for the audience, from the service account, and decodes message.data', async () => {
    const verified = await verify(`Bearer ${token({})}`);
    expect(verified.data).toEqual({ order: 7 });
  });

  it.each([
    ['no token', undefined, 'invalid_signature'],
    ['another audience', () => token({ aud: 'https://elsewhere.example/' }), 'invalid_signature'],
    ['an expired token', () => token({ iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }), 'timestamp_out_of_tolerance'],
    ['another issuer', () => token({ iss: 'https://issuer.example' }), 'invalid_signature'],
    ['another service account', () => token({ email: 'someone@example.com' }), 'invalid_signature'],
    ['an unverified email', () => token({ email_verified: false }), 'invalid_signature'],
    ['an unknown key', () => token({}, 'other-key'), 'invalid_signature'],
  ])('%s → %s', async (_name, make, expected) => {
    expect(await rejectionOf(verify(make ? `Bearer ${make()}` : undefined))).toBe(expected);
  });

  it('defaults the audience to the hook’s URL', async () => {
    expect(await rejectionOf(verify(`Bearer ${token({ aud: 'https://hooks.example.test/v1/hooks/ins_1' })}`, { audience: undefined }))).toBe('accepted');
    expect(await rejectionOf(verify(`Bearer ${token({ aud: 'https://hooks.example.test/v1/hooks/ins_2' })}`, { audience: undefined }))).toBe('invalid_signature');
  });

  it('answers unavailable when the keys cannot be fetched', async () => {
    const unreachable = createPubsubVerifier({ certsUrl: 'http://127.0.0.1:9/certs' });
    const result = verifyDelivery(spec(), { ...delivery(push, { authorization: `Bearer ${token({})}` }), receivedAt: Date.now() }, [], { pubsub: unreachable });
    expect(await rejectionOf(result)).toBe('unavailable');
  });
});
