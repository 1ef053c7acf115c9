/**
 * One effect per directive under crashes: worker processes that SIGKILL
 * themselves right after each directive's first provider call returns —
 * the provider acted, the outcome was never recorded — 20 times per
 * executor. Each worker makes one provider call at a time while it records
 * earlier outcomes, so a death can also take down the recording of the
 * directive called just before. A surviving worker's sweeper releases the
 * dead one's jobs; the next attempt knows the outcome is unknown, and the
 * provider sees exactly one effect per directive: Stripe through the
 * directive's idempotency key, Gmail through the Message-ID lookup, webhooks
 * through the same `webhook-id` on redelivery.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { getDirective, type Directive } from '../../src/directives/store.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { startGmailFake, type GmailFake } from '../fakes/gmail.ts';
import { startStripeFake, type StripeFake } from '../fakes/stripe.ts';
import { startWebhookSink, type WebhookSink } from '../fakes/webhook-sink.ts';
import { proposeApproved } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, TEST_MASTER_KEYS, type TestApp } from '../support/harness.ts';
import { workerChildren, type WorkerChildren } from '../support/worker-children.ts';

const DIRECTIVES = 20;
const WORKERS = 2;
const STRIPE_KEY = `sk_test_crash${randomBytes(12).toString('hex')}`;
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const GMAIL_CLIENT = { client_id: 'crash.apps.googleusercontent.com', client_secret: `GOCSPX-${randomBytes(8).toString('hex')}`, refresh_token: `1//crash-${randomBytes(8).toString('hex')}` };

let t: TestApp;
let org: Tenant;
let stripe: StripeFake;
let sink: WebhookSink;
let gmail: GmailFake;
let workers: WorkerChildren;
let counter = 0;
let markers: string;

beforeAll(async () => {
  markers = await mkdtemp(path.join(tmpdir(), 'signalbus-crash-'));
  stripe = await startStripeFake({ apiKeys: [STRIPE_KEY] });
  sink = await startWebhookSink({ secret: WEBHOOK_SECRET });
  gmail = await startGmailFake({ clientId: GMAIL_CLIENT.client_id, clientSecret: GMAIL_CLIENT.client_secret, refreshTokens: [GMAIL_CLIENT.refresh_token] });
  t = await createTestApp();
  org = await t.createOrg('executor_crash');
  await setPolicy(t, org, { rules: [{ id: 'allow-all', match: '*', effect: 'allow' }] });
  await putSecret(t.app.deps.vault, { tenant: org, name: 'stripe_api_key', input: { value: STRIPE_KEY } });
  await putSecret(t.app.deps.vault, { tenant: org, name: 'webhook_signing_secret', input: { value: WEBHOOK_SECRET } });
  await putSecret(t.app.deps.vault, { tenant: org, name: 'gmail_oauth', input: { value: JSON.stringify(GMAIL_CLIENT) } });
  workers = workerChildren({
    DATABASE_URL: t.database.url,
    SIGNALBUS_ENCRYPTION_KEYS: TEST_MASTER_KEYS,
    SIGNALBUS_STRIPE_API_BASE: stripe.url,
    SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true',
    SIGNALBUS_GOOGLE_API_BASE: gmail.url,
    SIGNALBUS_GOOGLE_OAUTH_BASE: gmail.url,
    SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '50',
    CRASH_AFTER_EXECUTE: '1',
    CRASH_MARKERS: markers,
    // One provider call at a time: each death follows its directive's first call.
    WORKER_CONCURRENCY: '1',
    WORKER_HEARTBEAT_MS: '250',
    WORKER_STALE_AFTER_MS: '1500',
  });
});

afterAll(async () => {
  await workers?.killAll();
  await t?.close();
  await stripe?.close();
  await sink?.close();
  await gmail?.close();
  if (markers) await rm(markers, { recursive: true, force: true });
});

const propose = async (kind: string, params: Record<string, unknown>) =>
  (await proposeApproved(t, { tenant: org, actor: PLATFORM_ACTOR }, { kind, params, idempotency_key: `crash-${++counter}` })).id;

/**
 * Keeps WORKERS worker processes alive — replacing each that dies — until
 * every directive in `ids` has finished. Returns how many workers killed
 * themselves: one per directive's first call. Replacements would undercount,
 * as a surviving worker may finish the last directives before the loop
 * replaces their dead ones.
 */
async function runThroughCrashes(ids: string[]): Promise<{ deaths: number; directives: Directive[] }> {
  const before = workers.selfKilled().length;
  const deadline = Date.now() + 240_000;
  for (;;) {
    const rows = await Promise.all(ids.map((id) => getDirective(t.app.deps.sql, org, id)));
    if (rows.every((row) => row.status === 'succeeded' || row.status === 'failed')) {
      // Every death preceded its directive's rerun by the sweep's stale interval, so its exit is already seen.
      const deaths = workers.selfKilled().length - before;
      await workers.killAll();
      return { deaths, directives: rows };
    }
    if (Date.now() > deadline) {
      const unfinished = rows.filter((row) => row.status !== 'succeeded' && row.status !== 'failed').map((row) => `${row.id}:${row.status}`);
      throw new Error(`directives unfinished: ${unfinished.join(', ')}\n${workers.outputs()}`);
    }
    const missing = WORKERS - workers.alive().length;
    await Promise.all(Array.from({ length: missing }, () => workers.spawn().catch(() => undefined)));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('one effect per directive when the worker dies right after the provider call', () => {
  it(`stripe: ${DIRECTIVES} kills, one refund per directive through its idempotency key`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < DIRECTIVES; i++) ids.push(await propose('stripe.refund.create', { payment_intent: `pi_crash_${i}`, amount: 100 + i }));
    const { deaths, directives } = await runThroughCrashes(ids);
    expect(deaths).toBe(DIRECTIVES);
    for (const directive of directives) {
      // Its first attempt's outcome was lost; so was a later one's if the next directive's death came first.
      expect(directive, directive.id).toMatchObject({ status: 'succeeded' });
      expect(directive.attempts, directive.id).toBeGreaterThanOrEqual(2);
      expect(stripe.effects.filter((effect) => effect.idempotencyKey === directive.id), directive.id).toHaveLength(1);
      // The repeat reached Stripe and was answered from its idempotency store.
      expect(stripe.calls.filter((call) => call.idempotencyKey === directive.id && call.replayed).length, directive.id).toBeGreaterThanOrEqual(1);
    }
    expect(stripe.effects.filter((effect) => ids.includes(effect.idempotencyKey!))).toHaveLength(DIRECTIVES);
  }, 270_000);

  it(`webhook.post: ${DIRECTIVES} kills, one effect per directive through the same webhook-id`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < DIRECTIVES; i++) ids.push(await propose('webhook.post', { url: `${sink.url}/hooks/crash`, body: { n: i } }));
    const { deaths, directives } = await runThroughCrashes(ids);
    expect(deaths).toBe(DIRECTIVES);
    for (const directive of directives) {
      // The call its worker died after went without a claim and was never
      // recorded; its job came back released, so the repeat was claimed: the
      // attempts count that one (and any whose recording a later death cut off).
      expect(directive, directive.id).toMatchObject({ status: 'succeeded' });
      expect(directive.attempts, directive.id).toBeGreaterThanOrEqual(1);
      const deliveries = sink.deliveries.filter((delivery) => delivery.webhookId === directive.id && delivery.status >= 200 && delivery.status < 300);
      // Delivered again after the crash, under the same id, so the receiver counts it once.
      expect(deliveries.length, directive.id).toBeGreaterThanOrEqual(2);
    }
    expect(new Set(sink.deliveries.map((delivery) => delivery.webhookId)).size).toBe(DIRECTIVES);
    expect(sink.calls.effects).toBe(DIRECTIVES);
  }, 270_000);

  it(`gmail.send: ${DIRECTIVES} kills, one message per directive, found by its Message-ID instead of sent again`, async () => {
    const ids: string[] = [];
    for (let i = 0; i < DIRECTIVES; i++) {
      ids.push(await propose('gmail.send', { to: [`customer${i}@example.com`], subject: `Your order ${i}`, text: 'Thanks!' }));
    }
    const { deaths, directives } = await runThroughCrashes(ids);
    expect(deaths).toBe(DIRECTIVES);
    for (const directive of directives) {
      expect(directive, directive.id).toMatchObject({ status: 'succeeded', result: { recovered: true } });
      expect(directive.attempts, directive.id).toBeGreaterThanOrEqual(2);
      const messageId = (directive.result as { rfc822_message_id: string }).rfc822_message_id;
      expect(messageId).toContain(directive.id);
      expect(gmail.sentCount(messageId), directive.id).toBe(1);
    }
    expect(gmail.effects.filter((effect) => effect.type === 'message.sent')).toHaveLength(DIRECTIVES);
  }, 270_000);
});
