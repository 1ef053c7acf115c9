/**
 * stripe-revenue@1.1.0 as deployed: the real `signalbus start` process on a
 * database created empty for this file (it migrates it), the Stripe SDK
 * pointed at the loopback Stripe fake through SIGNALBUS_STRIPE_API_BASE, and
 * everything else over HTTP — org, keys, policy, install, signed Stripe
 * deliveries, approval, entities. The process's own worker runs the install
 * job, the package's rules and the refunds. The main journey starts at Stripe:
 * a signed early fraud warning ends as exactly one refund at the fake.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { exitWithin, spawnCollected, stopChildren, waitForOutput, type Spawned } from '../support/cli-process.ts';
import { startStripeFake, type StripeFake } from '../fakes/stripe.ts';
import { NO_RATE_LIMITS, TEST_MASTER_KEYS } from '../support/harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'bin/signalbus.js');
const API_KEY = 'rk_test_e2e_refunds';
const WHSEC = 'whsec_ZTJlLXN0cmlwZS1yZXZlbnVl';
const THRESHOLD = 5000;

const databaseUrl = (name: string) => Object.assign(new URL(inject('adminUrl')), { pathname: `/${name}` }).toString();

let stripe: StripeFake;
let databaseName: string;
let env: NodeJS.ProcessEnv;
let server: Spawned;
let url: string;
let admin: string;
let operator: string;
let installationId: string;
/** The payment's event, as first delivered; redelivered later. */
let chargeEvent: string;
const org = 'e2e_stripe';

/** Polls every 150 ms: the process under test shares two cores with the rest of the run. */
async function waitFor<T>(condition: () => Promise<T | undefined | false>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${server.stderr.slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

async function api(method: string, route: string, key: string, body?: unknown) {
  const response = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined } as { status: number; body: any };
}

/** A Stripe event as Stripe sends it, signed as Stripe signs it. */
function stripeDelivery(type: string, object: Record<string, unknown>, id = `evt_${type.replace(/\./g, '_')}_${Date.now()}`) {
  const body = JSON.stringify({ id, object: 'event', type, created: Math.floor(Date.now() / 1000) - 2, livemode: false, data: { object } });
  return { id, body };
}
async function deliver(body: string) {
  const response = await fetch(`${url}/v1/hooks/${installationId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload: body, secret: WHSEC }) },
    body,
  });
  return { status: response.status, body: (await response.json()) as { signal_id: string | null; deduplicated: boolean } };
}

const refunds = () => stripe.effects.filter((effect) => effect.type === 'refund.created');

async function directiveOf(signalId: string) {
  return waitFor(async () => {
    const { body } = await api('GET', `/v1/orgs/${org}/directives?kind=stripe.refund.create&limit=100`, operator);
    return body.data.find((row: { params: { metadata?: { signalbus_signal?: string } } }) => row.params.metadata?.signalbus_signal === signalId);
  }, 30_000, `the rule's directive for ${signalId}`);
}
const directiveIn = (id: string, statuses: string[]) =>
  waitFor(async () => {
    const { body } = await api('GET', `/v1/orgs/${org}/directives/${id}`, operator);
    return statuses.includes(body.directive.status) && body.directive;
  }, 30_000, `directive ${id} to be ${statuses.join('|')}`);

const requestRefund = (paymentIntent: string, amount: number, dedupeKey: string) =>
  api('POST', `/v1/orgs/${org}/signals`, operator, {
    type: 'stripe.refund.requested',
    subject: paymentIntent,
    payload: { payment_intent: paymentIntent, amount, reason: 'requested_by_customer' },
    dedupe_key: dedupeKey,
  });

beforeAll(async () => {
  stripe = await startStripeFake({ apiKeys: [API_KEY] });
  databaseName = `sbt_${inject('runId')}_e2e_stripe_${process.pid.toString(36)}`;
  const adminSql = postgres(inject('adminUrl'), { max: 1, onnotice: () => {} });
  await adminSql.unsafe(`create database ${databaseName}`);
  await adminSql.end({ timeout: 5 });
  env = {
    ...process.env,
    ...NO_RATE_LIMITS,
    DATABASE_URL: databaseUrl(databaseName),
    SIGNALBUS_ENCRYPTION_KEYS: TEST_MASTER_KEYS,
    SIGNALBUS_STRIPE_API_BASE: stripe.url,
    SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '200',
    SIGNALBUS_WORKER_CONCURRENCY: '4',
    SIGNALBUS_DB_POOL_SIZE: '6',
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'warn',
  };
  server = spawnCollected(process.execPath, [CLI, 'start'], { cwd: ROOT, env });
  url = await waitForOutput(server, (stdout) => /^\s*API:\s+(http:\/\/\S+)\/v1\s*$/m.exec(stdout)?.[1], 'signalbus start to listen', 90_000);

  const keys = spawnCollected(process.execPath, [CLI, 'keys', 'create', '--platform-admin', '--json'], { cwd: ROOT, env });
  const { code } = await exitWithin(keys, 60_000);
  expect(code, keys.stderr).toBe(0);
  const platform = JSON.parse(keys.stdout).secret as string;

  expect((await api('POST', '/v1/orgs', platform, { slug: org, name: 'E2E Stripe' })).status).toBe(201);
  const created = await api('POST', `/v1/orgs/${org}/api-keys`, platform, { name: 'admin', role: 'admin', actor: { type: 'human', id: 'admin@e2e.test' } });
  expect(created.status).toBe(201);
  admin = created.body.secret;
  operator = (await api('POST', `/v1/orgs/${org}/api-keys`, admin, { name: 'ops', role: 'operator', actor: { type: 'human', id: 'ops@e2e.test' } })).body.secret;
});

afterAll(async () => {
  await stopChildren();
  await stripe?.close();
  if (databaseName) {
    const adminSql = postgres(inject('adminUrl'), { max: 1, onnotice: () => {} });
    await adminSql.unsafe(`drop database if exists ${databaseName} with (force)`);
    await adminSql.end({ timeout: 5 });
  }
});

describe('stripe-revenue in a running signalbus', () => {
  it('installs over HTTP with its config and secrets; the worker of `start` runs the install', async () => {
    // The org lets refunds through unless they are tiny; the package's own rule holds the large ones.
    const policy = await api('PUT', `/v1/orgs/${org}/policies`, admin, {
      rules: [
        { id: 'refunds', match: 'stripe.refund.create', effect: 'allow', reason: 'support refunds' },
        { id: 'tiny-refunds', match: 'stripe.refund.create', when: 'has(params.amount) && params.amount < 100', effect: 'deny', reason: 'not worth a refund' },
      ],
    });
    expect(policy.status, JSON.stringify(policy.body)).toBe(200);
    const requested = await api('POST', `/v1/orgs/${org}/installations`, admin, {
      package: 'stripe-revenue',
      version: '1.1.0',
      config: { refund_approval_above: THRESHOLD },
      secrets: { stripe_api_key: API_KEY, stripe_webhook_secret: WHSEC },
    });
    expect(requested.status, JSON.stringify(requested.body)).toBe(202);
    installationId = requested.body.installation.id;
    expect(JSON.stringify(requested.body)).not.toContain(API_KEY);
    const installed = await waitFor(async () => {
      const { body } = await api('GET', `/v1/orgs/${org}/installations/${installationId}`, admin);
      if (body.installation.status === 'failed') throw new Error(JSON.stringify(body.installation.error));
      return body.installation.status === 'installed' && body.installation;
    }, 30_000, 'the installation to be installed');
    expect(installed.webhook_url).toMatch(new RegExp(`/v1/hooks/${installationId}$`));
  });

  it('signed deliveries become signals once, and customers and payments show as entities', async () => {
    const customer = stripeDelivery('customer.created', { id: 'cus_e2e', object: 'customer', email: 'ana@e2e.test', name: 'Ana' });
    const charge = stripeDelivery('charge.succeeded', {
      id: 'ch_e2e', object: 'charge', amount: 9000, amount_refunded: 0, currency: 'eur', customer: 'cus_e2e', payment_intent: 'pi_e2e',
    });
    const first = await deliver(customer.body);
    expect(first).toEqual({ status: 200, body: { signal_id: expect.stringMatching(/^sig_/), deduplicated: false } });
    chargeEvent = charge.body;
    const paid = await deliver(charge.body);
    expect(paid.body.deduplicated).toBe(false);
    // Stripe redelivers: a fresh signature on the same event is the same signal.
    expect(await deliver(charge.body)).toEqual({ status: 200, body: { signal_id: paid.body.signal_id, deduplicated: true } });

    const { body: signal } = await api('GET', `/v1/orgs/${org}/signals/${paid.body.signal_id}`, operator);
    expect(signal.signal).toMatchObject({ type: 'stripe.charge.succeeded', subject: 'cus_e2e', dedupe_key: `stripe-revenue:${charge.id}`, installation_id: installationId });

    const customerEntity = await waitFor(async () => {
      const response = await api('GET', `/v1/orgs/${org}/entities/stripe.customer/cus_e2e`, operator);
      return response.status === 200 && response.body;
    }, 20_000, 'the customer entity');
    expect(customerEntity).toMatchObject({ type: 'stripe.customer', key: 'cus_e2e', fields: { email: 'ana@e2e.test', name: 'Ana' }, version: 1, tombstone: false });
    const payments = await waitFor(async () => {
      const { body } = await api('GET', `/v1/orgs/${org}/entities?type=stripe.payment`, operator);
      return body.data.length > 0 && body.data;
    }, 20_000, 'the payment entity');
    // The redelivery changed nothing: one version.
    expect(payments).toEqual([
      expect.objectContaining({ key: 'ch_e2e', version: 1, fields: { amount: 9000, amount_refunded: 0, currency: 'eur', customer: 'cus_e2e', refunded: false } }),
    ]);
  });

  it('a signed early fraud warning: refund held for approval, approved, Stripe sees exactly one refund under the directive id', async () => {
    const charge = stripeDelivery('charge.succeeded', {
      id: 'ch_fraud', object: 'charge', amount: 10_000, amount_refunded: 0, currency: 'eur', customer: 'cus_e2e', payment_intent: 'pi_fraud',
    });
    expect((await deliver(charge.body)).body.deduplicated).toBe(false);
    const warning = stripeDelivery('radar.early_fraud_warning.created', {
      id: 'issfr_e2e', object: 'radar.early_fraud_warning', actionable: true, charge: 'ch_fraud', created: Math.floor(Date.now() / 1000) - 5,
      fraud_type: 'made_with_stolen_card', livemode: false, payment_intent: 'pi_fraud',
    });
    const delivered = await deliver(warning.body);
    expect(delivered).toEqual({ status: 200, body: { signal_id: expect.stringMatching(/^sig_/), deduplicated: false } });
    const { body: signal } = await api('GET', `/v1/orgs/${org}/signals/${delivered.body.signal_id}`, operator);
    expect(signal.signal).toMatchObject({
      type: 'stripe.radar.early_fraud_warning.created', subject: 'ch_fraud', dedupe_key: `stripe-revenue:${warning.id}`, installation_id: installationId,
    });

    // No amount: the whole remainder of the charge, which the package's default policy holds.
    const held = await directiveOf(delivered.body.signal_id!);
    const directive = await directiveIn(held.id, ['awaiting_approval']);
    expect(directive).toMatchObject({ installation_id: installationId, params: { charge: 'ch_fraud', reason: 'fraudulent', metadata: { early_fraud_warning: 'issfr_e2e' } } });
    expect(directive.params).not.toHaveProperty('amount');
    expect(directive.decision).toMatchObject({ effect: 'require_approval', rule: 'stripe-revenue.large-refunds' });
    expect(directive.idempotency_key).toBe(`${delivered.body.signal_id}:${installationId}.refund-early-fraud-warning:charge:ch_fraud`);
    expect(refunds()).toEqual([]);

    const approved = await api('POST', `/v1/orgs/${org}/directives/${held.id}/approve`, operator, { reason: 'issuer reports a stolen card' });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const done = await directiveIn(held.id, ['succeeded', 'failed']);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    // Stripe's Idempotency-Key is the directive's id (docs/guarantees.md).
    expect(refunds()).toEqual([{ type: 'refund.created', id: done.result.id, idempotencyKey: directive.id }]);
    expect(stripe.calls.filter((row) => row.path === 'refunds')).toEqual([
      expect.objectContaining({ apiKey: API_KEY, idempotencyKey: directive.id, params: expect.objectContaining({ charge: 'ch_fraud', reason: 'fraudulent' }) }),
    ]);
    expect(done.result).toMatchObject({ charge: 'ch_fraud', amount: 10_000 });

    // Stripe redelivers the warning: the same signal, no second directive, still one refund.
    expect(await deliver(warning.body)).toEqual({ status: 200, body: { signal_id: delivered.body.signal_id, deduplicated: true } });
    const { body: page } = await api('GET', `/v1/orgs/${org}/directives?kind=stripe.refund.create&limit=100`, operator);
    expect(page.data.map((row: { id: string }) => row.id)).toEqual([held.id]);
    expect(refunds()).toHaveLength(1);
  });

  it('a requested refund above the threshold waits for approval, then Stripe sees exactly one refund under the directive key', async () => {
    const before = refunds().length;
    const requested = await requestRefund('pi_e2e', 7500, 'support-ticket-1');
    expect(requested.status, JSON.stringify(requested.body)).toBe(201);
    const held = await directiveOf(requested.body.signal.id);
    const directive = await directiveIn(held.id, ['awaiting_approval']);
    expect(directive).toMatchObject({ installation_id: installationId, params: { payment_intent: 'pi_e2e', amount: 7500 } });
    expect(directive.decision).toMatchObject({ effect: 'require_approval', rule: 'stripe-revenue.large-refunds' });
    expect(refunds()).toHaveLength(before);

    const approved = await api('POST', `/v1/orgs/${org}/directives/${held.id}/approve`, operator, { reason: 'ticket checked' });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    const done = await directiveIn(held.id, ['succeeded', 'failed']);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    // The directive's key derives from (signal, installation, rule); Stripe's Idempotency-Key is the
    // directive's id, one-to-one with that key and the same on every attempt (docs/guarantees.md).
    expect(done.idempotency_key).toBe(`${requested.body.signal.id}:${installationId}.propose-refund:propose-refund`);
    expect(refunds().slice(before)).toEqual([{ type: 'refund.created', id: done.result.id, idempotencyKey: held.id }]);
    const call = stripe.calls.find((row) => row.path === 'refunds' && row.params.payment_intent)!;
    expect(call).toMatchObject({ apiKey: API_KEY, params: { payment_intent: 'pi_e2e', amount: '7500' } });

    // The same request again, and Stripe's redelivery of the payment: nothing new.
    expect((await requestRefund('pi_e2e', 7500, 'support-ticket-1')).body).toMatchObject({ deduplicated: true, signal: { id: requested.body.signal.id } });
    expect((await deliver(chargeEvent)).body.deduplicated).toBe(true);
    const { body: page } = await api('GET', `/v1/orgs/${org}/directives?kind=stripe.refund.create&limit=100`, operator);
    expect(page.data).toHaveLength(2);
    expect(refunds()).toHaveLength(before + 1);
  });

  it("below the threshold the org's policy decides: allowed runs without approval, denied never reaches Stripe", async () => {
    const small = await requestRefund('pi_small', 1200, 'support-ticket-2');
    const allowed = await directiveIn((await directiveOf(small.body.signal.id)).id, ['succeeded', 'failed', 'awaiting_approval', 'rejected']);
    expect(allowed.status, JSON.stringify(allowed.error)).toBe('succeeded');
    expect(allowed.decision).toMatchObject({ effect: 'allow', rule: 'refunds' });

    const tiny = await requestRefund('pi_tiny', 50, 'support-ticket-3');
    const denied = await directiveIn((await directiveOf(tiny.body.signal.id)).id, ['rejected', 'succeeded', 'awaiting_approval']);
    expect(denied.decision).toMatchObject({ effect: 'deny', rule: 'tiny-refunds' });

    expect(refunds().map((effect) => effect.idempotencyKey)).toEqual([expect.stringMatching(/^dir_/), expect.stringMatching(/^dir_/), allowed.id]);
    expect(stripe.calls.filter((row) => row.path === 'refunds').map((row) => row.params.payment_intent ?? row.params.charge)).toEqual(['ch_fraud', 'pi_e2e', 'pi_small']);
  });

  it('stops on SIGTERM with exit code 0, having logged no error', async () => {
    server.child.kill('SIGTERM');
    expect(await exitWithin(server, 20_000)).toEqual({ code: 0, signal: null });
    const errors = (server.stdout + server.stderr).split('\n').filter((line) => /"level":(50|60)/.test(line));
    expect(errors).toEqual([]);
  });
});
