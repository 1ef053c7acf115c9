/**
 * Inbound webhooks over HTTP (`POST /v1/hooks/:installation_id`), on the
 * shipped packages: a signed delivery becomes one deduplicated signal, every
 * rejection answers its status and writes no signal, and every delivery is
 * in the installation's delivery log, which shows no body and no secret.
 */
import { createHmac } from 'node:crypto';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { changeInstallation, installedPackage } from '../support/installations.ts';

const WHSEC = 'whsec_hooks_test_current';
const HMAC_KEY = 'relay-inbound-key';
const STRIPE_CONFIG = { refund_approval_above: 1000 };
let t: TestApp;
let org: Tenant;
let other: Tenant;
let stripeHook: string;
let relayHook: string;
let otherHook: string;
let admin: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_HOOK_MAX_BODY_BYTES: '4096' } });
  org = await t.createOrg('hooks_a');
  other = await t.createOrg('hooks_b');
  admin = await t.createKey(org, 'admin');
  stripeHook = await installedPackage(t, org, {
    package: 'stripe-revenue',
    config: { refund_approval_above: 1000 },
    secrets: { stripe_webhook_secret: WHSEC, stripe_api_key: 'sk_test_hooks' },
  });
  relayHook = await installedPackage(t, org, {
    package: 'webhook-relay',
    version: '1.0.1',
    config: { endpoint_url: 'http://127.0.0.1:9/relay', forward_types: [], send_test_ping: false },
    secrets: { inbound_hmac_secret: HMAC_KEY, webhook_signing_secret: 'whsec_cmVsYXk=' },
  });
  otherHook = await installedPackage(t, other, {
    package: 'stripe-revenue',
    config: { refund_approval_above: 1000 },
    secrets: { stripe_webhook_secret: 'whsec_the_other_orgs', stripe_api_key: 'sk_test_other' },
  });
});
afterAll(() => t?.close());

/** stripe-revenue installs once per org: each extra one gets an org of its own. */
async function stripeInOwnOrg(slug: string, secret = WHSEC): Promise<{ tenant: Tenant; id: string }> {
  const tenant = await t.createOrg(slug);
  const id = await installedPackage(t, tenant, { package: 'stripe-revenue', config: STRIPE_CONFIG, secrets: { stripe_webhook_secret: secret, stripe_api_key: 'sk_test_hooks' } });
  return { tenant, id };
}

let counter = 0;
function stripeEvent(overrides: Record<string, unknown> = {}) {
  counter++;
  return JSON.stringify({
    id: `evt_${counter}_${Date.now()}`,
    object: 'event',
    type: 'charge.succeeded',
    created: Math.floor(Date.now() / 1000) - 5,
    data: { object: { id: `ch_${counter}`, object: 'charge', amount: 2500, currency: 'eur', customer: 'cus_42' } },
    ...overrides,
  });
}
const sign = (body: string, secret = WHSEC, timestamp = Math.floor(Date.now() / 1000)) =>
  Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp });

function deliver(id: string, body: string, headers: Record<string, string>) {
  return t.request('POST', `/v1/hooks/${id}`, { rawBody: body, headers: { 'content-type': 'application/json', ...headers } });
}

async function signalCount(tenant: Tenant, like = 'stripe.%'): Promise<number> {
  const [row] = await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from ${t.app.deps.sql(`${tenant.schema}.signals`)} where type like ${like}`;
  return row!.n;
}

/** The log's rows for one event, straight from the table: what is committed, with no wait for writes in flight. */
async function loggedRows(tenant: Tenant, eventId: string) {
  return t.app.deps.sql<{ outcome: string; reason: string | null; signal_id: string | null }[]>`
    select outcome, reason, signal_id from ${t.app.deps.sql(`${tenant.schema}.webhook_deliveries`)} where event_id = ${eventId} order by id`;
}

async function deliveries(id: string, tenant = org, key = admin) {
  const response = await t.request('GET', `/v1/orgs/${tenant.slug}/installations/${id}/deliveries?limit=1000`, { key });
  return response;
}

describe('a signed Stripe delivery', () => {
  it('becomes one signal of the package, as the integration, keyed by the event id; again, the original', async () => {
    const body = stripeEvent();
    const event = JSON.parse(body);
    const first = await deliver(stripeHook, body, { 'stripe-signature': sign(body) });
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ signal_id: expect.stringMatching(/^sig_/), deduplicated: false });
    const signal = (await t.request('GET', `/v1/orgs/${org.slug}/signals/${first.body.signal_id}`, { key: admin })).body.signal;
    expect(signal).toMatchObject({
      type: 'stripe.charge.succeeded',
      subject: 'cus_42',
      actor: { type: 'integration', id: 'stripe-revenue' },
      source: 'webhook:stripe-revenue',
      dedupe_key: `stripe-revenue:${event.id}`,
      installation_id: stripeHook,
      payload: event.data.object,
      occurred_at: new Date(event.created * 1000).toISOString(),
    });
    // Stripe retries with a fresh signature: the same event, the same signal.
    const again = await deliver(stripeHook, body, { 'stripe-signature': sign(body, WHSEC, Math.floor(Date.now() / 1000) + 1) });
    expect(again.body).toEqual({ signal_id: first.body.signal_id, deduplicated: true });
    const log = (await deliveries(stripeHook)).body.data;
    expect(log.slice(0, 2).map((row: { outcome: string }) => row.outcome)).toEqual(['deduplicated', 'accepted']);
    expect(log[1]).toMatchObject({ status: 200, event_id: event.id, signal_id: first.body.signal_id, body_bytes: Buffer.byteLength(body) });
    expect(log[1].body_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is answered once its log row is committed with its signal', async () => {
    const body = stripeEvent();
    const answer = await deliver(stripeHook, body, { 'stripe-signature': sign(body) });
    expect(answer.status).toBe(200);
    expect(await loggedRows(org, JSON.parse(body).id)).toEqual([{ outcome: 'accepted', reason: null, signal_id: answer.body.signal_id }]);
  });

  it('the same event id with another body is refused as a conflict: logged as rejected, no signal, no accepted row', async () => {
    const body = stripeEvent();
    const event = JSON.parse(body);
    const first = await deliver(stripeHook, body, { 'stripe-signature': sign(body) });
    const before = await signalCount(org);
    const altered = JSON.stringify({ ...event, data: { object: { ...event.data.object, amount: 1 } } });
    const refused = await deliver(stripeHook, altered, { 'stripe-signature': sign(altered) });
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('idempotency_conflict');
    expect(await signalCount(org)).toBe(before);
    expect(await loggedRows(org, event.id)).toEqual([
      { outcome: 'accepted', reason: null, signal_id: first.body.signal_id },
      { outcome: 'rejected', reason: 'idempotency_conflict', signal_id: null },
    ]);
  });

  it('an event type the package does not take is acknowledged and recorded as nothing', async () => {
    const before = await signalCount(org);
    const body = stripeEvent({ type: 'invoice.paid', data: { object: { id: 'in_1', object: 'invoice' } } });
    const response = await deliver(stripeHook, body, { 'stripe-signature': sign(body) });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ signal_id: null, deduplicated: false });
    expect(await signalCount(org)).toBe(before);
    expect((await deliveries(stripeHook)).body.data[0]).toMatchObject({ outcome: 'ignored', reason: 'not_selected' });
  });
});

describe('rejections answer their status, write no signal, and are logged', () => {
  const now = () => Math.floor(Date.now() / 1000);
  const body = stripeEvent();
  const reserialized = JSON.stringify(JSON.parse(body), null, 1);
  const v1 = (secret: string) => sign(body, secret).split(',').find((part) => part.startsWith('v1='))!;
  it.each([
    ['wrong secret', body, () => ({ 'stripe-signature': sign(body, 'whsec_wrong') }), 401, 'invalid_signature'],
    ['tampered body', body.replace('2500', '25000'), () => ({ 'stripe-signature': sign(body) }), 401, 'invalid_signature'],
    ['re-serialized JSON', reserialized, () => ({ 'stripe-signature': sign(body) }), 401, 'invalid_signature'],
    ['timestamp too old', body, () => ({ 'stripe-signature': sign(body, WHSEC, now() - 301) }), 401, 'timestamp_out_of_tolerance'],
    ['timestamp in the future', body, () => ({ 'stripe-signature': sign(body, WHSEC, now() + 400) }), 401, 'timestamp_out_of_tolerance'],
    ['missing header', body, () => ({}), 401, 'invalid_signature'],
    ['over the size limit', JSON.stringify({ pad: 'x'.repeat(5000) }), () => ({ 'stripe-signature': 't=1,v1=00' }), 413, 'payload_too_large'],
  ])('%s → %i %s', async (_name, sent, headers, status, code) => {
    const before = await signalCount(org);
    const response = await deliver(stripeHook, sent, headers());
    expect(response.status).toBe(status);
    expect(response.body.code).toBe(code);
    expect(await signalCount(org)).toBe(before);
    const [latest] = (await deliveries(stripeHook)).body.data;
    expect(latest).toMatchObject({ outcome: 'rejected', status, reason: code, signal_id: null });
    if (status === 413) expect(latest.body_sha256).toBeNull();
  });

  it('several v1 values: accepted when one matches, refused when none does', async () => {
    const header = `t=${now()},${v1('whsec_elsewhere')},${v1(WHSEC)}`;
    expect((await deliver(stripeHook, body, { 'stripe-signature': header })).status).toBe(200);
    const wrong = stripeEvent();
    const before = await signalCount(org);
    const refused = await deliver(stripeHook, wrong, { 'stripe-signature': `t=${now()},${v1('whsec_a')},${v1('whsec_b')}` });
    expect(refused.status).toBe(401);
    expect(await signalCount(org)).toBe(before);
  });

  it('a rotated secret: while the vault holds both, either verifies; once the old one is dropped, it is refused', async () => {
    const { tenant: rotatingOrg, id: rotating } = await stripeInOwnOrg('hooks_rotating', `whsec_new ${WHSEC}`);
    const rotatingAdmin = await t.createKey(rotatingOrg, 'admin');
    const old = stripeEvent();
    expect((await deliver(rotating, old, { 'stripe-signature': sign(old) })).status).toBe(200);
    const fresh = stripeEvent();
    expect((await deliver(rotating, fresh, { 'stripe-signature': sign(fresh, 'whsec_new') })).status).toBe(200);
    const configured = await t.request('PATCH', `/v1/orgs/${rotatingOrg.slug}/installations/${rotating}`, { key: rotatingAdmin, body: { secrets: { stripe_webhook_secret: 'whsec_new' } } });
    expect(configured.status).toBe(200);
    const late = stripeEvent();
    expect((await deliver(rotating, late, { 'stripe-signature': sign(late) })).body.code).toBe('invalid_signature');
  });

  it('an unknown id, a disabled and an uninstalled installation are all 404, alike', async () => {
    const unknown = await deliver('ins_00000000000000000000000000', body, { 'stripe-signature': sign(body) });
    const malformed = await deliver('nothing-here', body, { 'stripe-signature': sign(body) });
    const { tenant: disabledOrg, id: disabled } = await stripeInOwnOrg('hooks_disabled');
    await changeInstallation(t, disabledOrg, disabled, 'disable');
    const { tenant: goneOrg, id: gone } = await stripeInOwnOrg('hooks_gone');
    await changeInstallation(t, goneOrg, gone, 'uninstall');
    const before = [await signalCount(disabledOrg), await signalCount(goneOrg)];
    const answers = [unknown, malformed, await deliver(disabled, body, { 'stripe-signature': sign(body) }), await deliver(gone, body, { 'stripe-signature': sign(body) })];
    for (const answer of answers) {
      expect(answer.status).toBe(404);
      expect({ ...answer.body, request_id: undefined }).toEqual({ ...unknown.body, request_id: undefined });
    }
    expect([await signalCount(disabledOrg), await signalCount(goneOrg)]).toEqual(before);
    const disabledAdmin = await t.createKey(disabledOrg, 'admin');
    expect((await deliveries(disabled, disabledOrg, disabledAdmin)).body.data[0]).toMatchObject({ status: 404, reason: 'not_found', detail: 'the installation is disabled' });
    // Enabled again, its hook answers.
    await changeInstallation(t, disabledOrg, disabled, 'enable');
    const later = stripeEvent();
    expect((await deliver(disabled, later, { 'stripe-signature': sign(later) })).status).toBe(200);
  });
});

describe('generic HMAC (webhook-relay)', () => {
  it('verifies X-Signature-256 and records relay.event.received; a bad signature is 401', async () => {
    const body = JSON.stringify({ id: 'order-77', type: 'order.paid', total: 12 });
    const signature = `sha256=${createHmac('sha256', HMAC_KEY).update(body).digest('hex')}`;
    const response = await deliver(relayHook, body, { 'x-signature-256': signature });
    expect(response.status).toBe(200);
    const signal = (await t.request('GET', `/v1/orgs/${org.slug}/signals/${response.body.signal_id}`, { key: admin })).body.signal;
    expect(signal).toMatchObject({
      type: 'relay.event.received',
      dedupe_key: 'webhook-relay:order-77',
      actor: { type: 'integration', id: 'webhook-relay' },
      payload: { event_id: 'order-77', event_type: 'order.paid', data: { id: 'order-77', type: 'order.paid', total: 12 } },
    });
    const refused = await deliver(relayHook, body, { 'x-signature-256': `sha256=${'0'.repeat(64)}` });
    expect(refused.status).toBe(401);
    expect(await signalCount(org, 'relay.%')).toBe(1);
  });

  it('relay deliveries append through group commit: answered once each log row is committed with its signal; a conflict is logged as rejected', async () => {
    const signed = (body: string) => ({ 'x-signature-256': `sha256=${createHmac('sha256', HMAC_KEY).update(body).digest('hex')}` });
    const bodies = Array.from({ length: 40 }, (_, index) => JSON.stringify({ id: `grouped-${index}`, type: 'order.paid', total: index }));
    // Each one twice, concurrently: one signal per event, both copies logged with it.
    const answers = await Promise.all([...bodies, ...bodies].map((body) => deliver(relayHook, body, signed(body))));
    expect(answers.map((answer) => answer.status).filter((status) => status !== 200)).toEqual([]);
    for (const [index, body] of bodies.entries()) {
      const logged = await loggedRows(org, JSON.parse(body).id);
      expect(logged.map((row) => row.outcome).sort()).toEqual(['accepted', 'deduplicated']);
      expect(logged.map((row) => row.signal_id)).toEqual([answers[index]!.body.signal_id, answers[index]!.body.signal_id]);
      expect(answers[index + bodies.length]!.body.signal_id).toBe(answers[index]!.body.signal_id);
    }
    const altered = JSON.stringify({ id: 'grouped-0', type: 'order.paid', total: 999 });
    const refused = await deliver(relayHook, altered, signed(altered));
    expect(refused.status).toBe(409);
    // Ids are time-ordered: the refusal came last.
    const logged = await loggedRows(org, 'grouped-0');
    expect(logged.at(-1)).toEqual({ outcome: 'rejected', reason: 'idempotency_conflict', signal_id: null });
    expect(logged.slice(0, -1).map((row) => row.outcome).sort()).toEqual(['accepted', 'deduplicated']);
  });
});

describe('isolation', () => {
  it("org A's installation id with org B's secret → 401, and nothing in either org", async () => {
    const body = stripeEvent();
    const [a, b] = [await signalCount(org), await signalCount(other)];
    const response = await deliver(stripeHook, body, { 'stripe-signature': sign(body, 'whsec_the_other_orgs') });
    expect(response.status).toBe(401);
    expect([await signalCount(org), await signalCount(other)]).toEqual([a, b]);
    // And B's own hook takes it.
    expect((await deliver(otherHook, body, { 'stripe-signature': sign(body, 'whsec_the_other_orgs') })).status).toBe(200);
  });

  it("the delivery log: admins only, and another org's installation is not found", async () => {
    expect((await deliveries(stripeHook, org, await t.createKey(org, 'operator'))).status).toBe(403);
    const otherAdmin = await t.createKey(other, 'admin');
    expect((await deliveries(stripeHook, other, otherAdmin)).status).toBe(404);
    expect((await deliveries(otherHook, org, admin)).status).toBe(404);
  });

  it('the log never holds the secret or the body', async () => {
    const body = stripeEvent({ data: { object: { id: 'ch_canary', object: 'charge', amount: 1, currency: 'eur', customer: 'cus_canary_body' } } });
    await deliver(stripeHook, body, { 'stripe-signature': sign(body, 'whsec_canary_secret') });
    await deliver(stripeHook, body, { 'stripe-signature': sign(body) });
    const text = (await deliveries(stripeHook)).text;
    for (const leak of [WHSEC, 'whsec_canary_secret', 'cus_canary_body', 'v1=']) expect(text).not.toContain(leak);
  });
});

describe('concurrency', () => {
  it('1,000 concurrent copies of one valid delivery → one signal, 999 deduplicated', async () => {
    // An org of its own: its log holds exactly these 1,000 rows, none trimmed.
    const { tenant, id } = await stripeInOwnOrg('hooks_dupes');
    const body = stripeEvent();
    const header = { 'stripe-signature': sign(body) };
    const before = await signalCount(tenant);
    const answers = await Promise.all(Array.from({ length: 1000 }, () => deliver(id, body, header)));
    expect(answers.map((answer) => answer.status).filter((status) => status !== 200)).toEqual([]);
    expect(new Set(answers.map((answer) => answer.body.signal_id)).size).toBe(1);
    expect(answers.filter((answer) => answer.body.deduplicated)).toHaveLength(999);
    expect(await signalCount(tenant)).toBe(before + 1);
    // Every copy is logged, each with the one signal, by the time it is answered.
    const logged = await loggedRows(tenant, JSON.parse(body).id);
    expect(logged.filter((row) => row.outcome === 'accepted')).toHaveLength(1);
    expect(logged.filter((row) => row.outcome === 'deduplicated')).toHaveLength(999);
    expect(new Set(logged.map((row) => row.signal_id))).toEqual(new Set([answers[0]!.body.signal_id]));
  }, 60_000);
});

describe('the per-installation rate limit', () => {
  it('answers 429 past the burst, with Retry-After, writes nothing and logs it', async () => {
    const limited = await createTestApp({ env: { SIGNALBUS_RATE_LIMIT_HOOK_PER_S: '1', SIGNALBUS_RATE_LIMIT_HOOK_BURST: '2' } });
    try {
      const tenant = await limited.createOrg('hooks_limited');
      const id = await installedPackage(limited, tenant, { package: 'stripe-revenue', config: STRIPE_CONFIG, secrets: { stripe_webhook_secret: WHSEC, stripe_api_key: 'sk_test_hooks' } });
      const statuses: number[] = [];
      let refused;
      for (let i = 0; i < 4; i++) {
        const body = stripeEvent();
        const response = await limited.request('POST', `/v1/hooks/${id}`, { rawBody: body, headers: { 'content-type': 'application/json', 'stripe-signature': sign(body) } });
        statuses.push(response.status);
        if (response.status === 429) refused = response;
      }
      expect(statuses.slice(0, 2)).toEqual([200, 200]);
      expect(statuses.slice(2)).toContain(429);
      expect(Number(refused!.headers.get('retry-after'))).toBeGreaterThan(0);
      const [row] = await limited.app.deps.sql<{ n: number }[]>`select count(*)::int as n from ${limited.app.deps.sql(`${tenant.schema}.signals`)} where type like 'stripe.%'`;
      expect(row!.n).toBe(statuses.filter((status) => status === 200).length);
      const [logged] = await limited.app.deps.sql<{ n: number }[]>`
        select count(*)::int as n from ${limited.app.deps.sql(`${tenant.schema}.webhook_deliveries`)} where status = 429 and reason = 'rate_limited'`;
      expect(logged!.n).toBe(statuses.filter((status) => status === 429).length);
    } finally {
      await limited.close();
    }
  });
});
