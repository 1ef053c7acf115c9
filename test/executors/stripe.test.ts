/**
 * The `stripe.*` executor end to end: directives proposed, executed by a
 * running worker through the real `stripe` SDK against a fake Stripe on
 * loopback. Every attempt of a directive carries the directive's
 * Idempotency-Key, so retries after a 500 or a dropped connection never
 * repeat the effect; Stripe's refusals end the directive with Stripe's code;
 * past Stripe's idempotency window the core refuses to call again; and the
 * API key never leaves the vault except toward Stripe.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import type { ExecuteRequest } from '../../src/executors/registry.ts';
import { createStripeExecutor, STRIPE_IDEMPOTENCY_WINDOW_MS } from '../../src/executors/stripe/executor.ts';
import type { StripeParams } from '../../src/executors/stripe/params.ts';
import type { ExecutionFailed } from '../../src/executions/model.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { startStripeFake, type StripeFake } from '../fakes/stripe.ts';
import { directRequest, executionSignals, finishedDirective, proposeApproved } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

/** A canary: searched for in logs, signals and rows at the end. */
const API_KEY = `sk_test_canary${randomBytes(16).toString('hex')}`;
const OPERATOR: Actor = { type: 'human', id: 'ops@stripe.test' };
const HOUR_MS = 3_600_000;

let fake: StripeFake;
let t: TestApp;
let org: Tenant;
/** Has no `stripe_api_key`. */
let bare: Tenant;
/** Shifts the app's clock (not the database's, not the fake's). */
let clockOffsetMs = 0;

beforeAll(async () => {
  fake = await startStripeFake({ apiKeys: [API_KEY] });
  t = await createTestApp({
    env: { SIGNALBUS_STRIPE_API_BASE: fake.url, SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '20' },
    now: () => new Date(Date.now() + clockOffsetMs),
  });
  org = await t.createOrg('stripe_exec');
  bare = await t.createOrg('stripe_bare');
  for (const tenant of [org, bare]) {
    await setPolicy(t, tenant, { rules: [{ id: 'allow-stripe', match: 'stripe.*', effect: 'allow' }] });
  }
  await putSecret(t.app.deps.vault, { tenant: org, name: 'stripe_api_key', input: { value: API_KEY } });
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

const propose = async (kind: string, params: Record<string, unknown>, tenant = org) => (await proposeApproved(t, { tenant, actor: OPERATOR }, { kind, params })).id;
const finished = (id: string, tenant = org) => finishedDirective(t, tenant, id);
const run = async (kind: string, params: Record<string, unknown>, tenant = org) => finished(await propose(kind, params, tenant), tenant);
const callsFor = (id: string) => fake.calls.filter((call) => call.idempotencyKey === id);
const effectsFor = (id: string) => fake.effects.filter((effect) => effect.idempotencyKey === id);

const failures = (directiveId: string) => executionSignals<ExecutionFailed>(t, org, 'execution.failed', directiveId);

describe('each kind', () => {
  const cases = [
    {
      kind: 'stripe.refund.create',
      params: { payment_intent: 'pi_1001', amount: 1500, reason: 'requested_by_customer', metadata: { order: 'o-1001' } },
      path: 'refunds',
      sent: { payment_intent: 'pi_1001', amount: '1500', reason: 'requested_by_customer', metadata: { order: 'o-1001' } },
      result: { id: expect.stringMatching(/^re_/), object: 'refund', status: 'succeeded', amount: 1500, currency: 'usd', payment_intent: 'pi_1001' },
    },
    {
      kind: 'stripe.customer.update',
      params: { customer: 'cus_2002', email: 'ana@example.test', name: 'Ana Lima', metadata: { tier: 'gold' } },
      path: 'customers/cus_2002',
      sent: { email: 'ana@example.test', name: 'Ana Lima', metadata: { tier: 'gold' } },
      result: { id: 'cus_2002', object: 'customer', updated: ['email', 'metadata', 'name'] },
    },
    {
      kind: 'stripe.checkout.session.create',
      params: {
        mode: 'payment',
        line_items: [{ price: 'price_3003', quantity: 2 }, { price_data: { currency: 'eur', unit_amount: 450, product_data: { name: 'Gift wrap' } }, quantity: 1 }],
        success_url: 'https://shop.example.test/thanks',
        cancel_url: 'https://shop.example.test/cart',
        customer: 'cus_3003',
        metadata: { cart: 'c-3003' },
      },
      path: 'checkout/sessions',
      sent: {
        mode: 'payment',
        line_items: [{ price: 'price_3003', quantity: '2' }, { price_data: { currency: 'eur', unit_amount: '450', product_data: { name: 'Gift wrap' } }, quantity: '1' }],
        success_url: 'https://shop.example.test/thanks',
        cancel_url: 'https://shop.example.test/cart',
        customer: 'cus_3003',
        metadata: { cart: 'c-3003' },
      },
      result: { id: expect.stringMatching(/^cs_test_/), object: 'checkout.session', status: 'open', url: expect.stringMatching(/^https:\/\/checkout\.stripe\.com\//), mode: 'payment' },
    },
    {
      kind: 'stripe.payment_link.create',
      params: { line_items: [{ price: 'price_4004', quantity: 1 }], metadata: { campaign: 'spring' } },
      path: 'payment_links',
      sent: { line_items: [{ price: 'price_4004', quantity: '1' }], metadata: { campaign: 'spring' } },
      result: { id: expect.stringMatching(/^plink_/), object: 'payment_link', active: true, url: expect.stringMatching(/^https:\/\/buy\.stripe\.com\//) },
    },
  ];

  it.each(cases)('$kind succeeds once, with the directive id as Idempotency-Key', async ({ kind, params, path, sent, result }) => {
    const directive = await run(kind, params);
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 1, error: null, result });
    const calls = callsFor(directive.id);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ method: 'POST', path, params: sent, idempotencyKey: directive.id, apiKey: API_KEY, status: 200, replayed: false });
    const effects = effectsFor(directive.id);
    expect(effects).toHaveLength(1);
    expect((directive.result as { id: string }).id).toBe(effects[0]!.id);
  });

  it('the customer update reached the customer', () => {
    expect(fake.objects.get('cus_2002')).toMatchObject({ email: 'ana@example.test', name: 'Ana Lima', metadata: { tier: 'gold' } });
  });
});

describe('retries under one Idempotency-Key', () => {
  it('a 500 is retried with the same key, and the effect happens once', async () => {
    fake.failNext('server_error');
    const directive = await run('stripe.refund.create', { payment_intent: 'pi_5005', amount: 100 });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const calls = callsFor(directive.id);
    expect(calls.map((call) => call.status)).toEqual([500, 200]);
    expect(new Set(calls.map((call) => call.idempotencyKey))).toEqual(new Set([directive.id]));
    expect(effectsFor(directive.id)).toHaveLength(1);
    expect(await failures(directive.id)).toMatchObject([{ attempt: 1, final: false, error: { code: 'api_error' } }]);
  });

  it('an effect applied but never answered is replayed on the retry, not repeated', async () => {
    // Twice: the SDK repeats a reset request once by itself (same key), then our retry runs.
    fake.failNext('drop_after_effect', { times: 2 });
    const directive = await run('stripe.refund.create', { payment_intent: 'pi_6006', amount: 200 });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const calls = callsFor(directive.id);
    expect(calls.map((call) => [call.status, call.replayed])).toEqual([[-1, false], [-1, true], [200, true]]);
    const effects = effectsFor(directive.id);
    expect(effects).toHaveLength(1);
    expect(directive.result).toMatchObject({ id: effects[0]!.id, amount: 200 });
    expect(await failures(directive.id)).toMatchObject([{ attempt: 1, error: { code: 'connection_error' } }]);
  });

  it('a 429 waits for its Retry-After', async () => {
    fake.failNext('rate_limit', { retryAfterSeconds: 1 });
    const directive = await run('stripe.payment_link.create', { line_items: [{ price: 'price_7007', quantity: 1 }] });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const calls = callsFor(directive.id);
    expect(calls.map((call) => call.status)).toEqual([429, 200]);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(1000);
    const [failure] = await failures(directive.id);
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'rate_limit' } });
    expect(new Date(failure!.retry_at!).getTime() - new Date(failure!.finished_at).getTime()).toBeGreaterThanOrEqual(1000);
  });
});

describe("Stripe's refusals", () => {
  it('a refused API key fails the directive as needs_reauthorization and asks for a new stripe_api_key', async () => {
    fake.failNext('invalid_api_key');
    const directive = await run('stripe.refund.create', { payment_intent: 'pi_8008' });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'needs_reauthorization' } });
    expect(callsFor(directive.id)).toHaveLength(1);
    expect(effectsFor(directive.id)).toHaveLength(0);
    const sql = t.app.deps.sql;
    const notices = await sql<{ subject: string; payload: Record<string, unknown> }[]>`
      select subject, payload from ${sql(`${org.schema}.signals`)}
       where type = 'secret.reauthorization_required' and payload->>'directive_id' = ${directive.id}`;
    expect(notices).toMatchObject([
      { subject: 'secret:org/stripe_api_key', payload: { name: 'stripe_api_key', owner: 'org', kind: 'stripe.refund.create', error: { code: 'invalid_api_key' } } },
    ]);
  });

  it('a declined card fails at once with card_declined, without a second call', async () => {
    fake.failNext('card_declined');
    const directive = await run('stripe.refund.create', { charge: 'ch_9009', amount: 300 });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'card_declined' } });
    expect(directive.error!.message).toContain('generic_decline');
    expect(callsFor(directive.id)).toHaveLength(1);
  });

  it('an unknown object fails at once with resource_missing', async () => {
    const directive = await run('stripe.customer.update', { customer: 'cus_missing', name: 'Nobody' });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'resource_missing' } });
    expect(callsFor(directive.id)).toHaveLength(1);
  });

  it('without a stripe_api_key the directive fails as missing_credential, and Stripe is not called', async () => {
    const directive = await run('stripe.refund.create', { payment_intent: 'pi_1010' }, bare);
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'missing_credential' } });
    expect(directive.error!.message).toContain('stripe_api_key');
    expect(callsFor(directive.id)).toHaveLength(0);
  });
});

describe('params at proposal', () => {
  it('are refused over HTTP with 422 naming the field, before anything is recorded or sent', async () => {
    const key = await t.createKey(org, 'operator');
    const sql = t.app.deps.sql;
    const count = async () => (await sql<{ n: number }[]>`select count(*)::int as n from ${sql(`${org.schema}.directives`)}`)[0]!.n;
    const before = { directives: await count(), calls: fake.calls.length };
    const cases: [string, Record<string, unknown>, string][] = [
      ['stripe.refund.create', { payment_intent: 'pi_1', amount: -5 }, 'params.amount'],
      ['stripe.refund.create', { amount: 100 }, 'params.payment_intent'],
      ['stripe.refund.create', { payment_intent: 'ch_wrong_prefix' }, 'params.payment_intent'],
      ['stripe.customer.update', { customer: 'cus_1', email: 'not-an-address' }, 'params.email'],
      ['stripe.checkout.session.create', { mode: 'payment', line_items: [{ price: 'price_1', quantity: 1 }], success_url: 'not a url' }, 'params.success_url'],
      ['stripe.checkout.session.create', { mode: 'payment', success_url: 'https://shop.example.test/ok' }, 'params.line_items'],
      ['stripe.payment_link.create', { line_items: [] }, 'params.line_items'],
      ['stripe.payment_link.create', { line_items: [{ price: 'price_1', quantity: 1 }], secret_field: true }, 'params'],
    ];
    for (const [kind, params, path] of cases) {
      const response = await t.request('POST', `/v1/orgs/${org.slug}/directives`, { key, body: { kind, params } });
      expect(response.status, `${kind} ${JSON.stringify(params)}: ${response.text}`).toBe(422);
      expect(response.body.code).toBe('validation_failed');
      expect(response.body.errors.map((error: { path: string }) => error.path)).toContain(path);
    }
    const accepted = await t.request('POST', `/v1/orgs/${org.slug}/directives`, { key, body: { kind: 'stripe.refund.create', params: { payment_intent: 'pi_1111', amount: 1 } } });
    expect(accepted.status, accepted.text).toBe(201);
    await finished(accepted.body.directive.id);
    expect(await count()).toBe(before.directives + 1);
    expect(fake.calls.length).toBe(before.calls + 1);
  });
});

describe("Stripe's idempotency window", () => {
  it('a retry after the window is failed needs_reconcile without calling Stripe', async () => {
    expect(STRIPE_IDEMPOTENCY_WINDOW_MS).toBeLessThan(24 * HOUR_MS);
    fake.failNext('server_error');
    const release = fake.hold();
    try {
      // The first attempt is claimed a day ago; its call reaches Stripe...
      clockOffsetMs = -24 * HOUR_MS;
      const id = await propose('stripe.refund.create', { payment_intent: 'pi_1212', amount: 100 });
      await waitFor(() => fake.held === 1, 10_000, 'the first attempt to reach the fake');
      // ...and fails now, a day later: a retry now could outlive Stripe's memory of the key.
      clockOffsetMs = 0;
      release();
      const directive = await finished(id);
      expect(directive).toMatchObject({ status: 'failed', error: { code: 'needs_reconcile' } });
      expect(callsFor(id).map((call) => call.status)).toEqual([500]);
      expect(effectsFor(id)).toHaveLength(0);
    } finally {
      clockOffsetMs = 0;
      release();
    }
  });
});

describe('at the edge, without a worker', () => {
  const request = (params: StripeParams, idempotencyKey: string, kind = 'stripe.refund.create'): ExecuteRequest<StripeParams> =>
    directRequest({ directiveId: idempotencyKey, kind, params, idempotencyKey, orgId: 'org_edge', secrets: { stripe_api_key: API_KEY } });
  // Built lazily: the fake's URL exists only after beforeAll.
  const edge = () => createStripeExecutor({ apiBase: fake.url, timeoutMs: 300 });

  it('a call that hangs times out as retryable', async () => {
    fake.failNext('hang');
    const outcome = await edge().execute(request({ payment_intent: 'pi_1313' }, 'dir_edge_hang'));
    expect(outcome).toMatchObject({ outcome: 'retryable', error: { code: 'timeout' } });
  });

  it('the same key with other params is a permanent idempotency_conflict', async () => {
    const stripe = edge();
    expect(await stripe.execute(request({ payment_intent: 'pi_1414', amount: 10 }, 'dir_edge_conflict'))).toMatchObject({ outcome: 'succeeded' });
    expect(await stripe.execute(request({ payment_intent: 'pi_1414', amount: 10 }, 'dir_edge_conflict'))).toMatchObject({ outcome: 'succeeded' });
    expect(await stripe.execute(request({ payment_intent: 'pi_1414', amount: 11 }, 'dir_edge_conflict'))).toMatchObject({
      outcome: 'permanent',
      error: { code: 'idempotency_conflict' },
    });
    expect(effectsFor('dir_edge_conflict')).toHaveLength(1);
  });

  it('a lock_timeout is retryable after its Retry-After', async () => {
    fake.failNext('lock_timeout', { retryAfterSeconds: 2 });
    expect(await edge().execute(request({ customer: 'cus_1515', name: 'Busy' }, 'dir_edge_lock', 'stripe.customer.update'))).toMatchObject({
      outcome: 'retryable',
      error: { code: 'lock_timeout' },
      retryAfterMs: 2000,
    });
  });
});

describe('the API key', () => {
  it('appears in no log line, signal, directive, execution or job', async () => {
    expect(t.logs.length).toBeGreaterThan(0);
    expect(t.logs.filter((line) => line.includes(API_KEY))).toEqual([]);
    const sql = t.app.deps.sql;
    for (const tenant of [org, bare]) {
      for (const table of ['signals', 'directives', 'executions']) {
        const [row] = await sql<{ n: number; total: number }[]>`
          select count(*) filter (where strpos(r::text, ${API_KEY}) > 0)::int as n, count(*)::int as total
            from ${sql(`${tenant.schema}.${table}`)} r`;
        expect(row!.n, `${tenant.slug}.${table}`).toBe(0);
        if (tenant === org) expect(row!.total, `${tenant.slug}.${table}`).toBeGreaterThan(0);
      }
    }
    const [jobs] = await sql<{ n: number }[]>`
      select count(*)::int as n from graphile_worker._private_jobs where strpos(payload::text, ${API_KEY}) > 0`;
    expect(jobs!.n).toBe(0);
  });
});
