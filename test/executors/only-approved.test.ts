/**
 * Only approved directives reach a provider. With all four fake providers up,
 * the app pointed at them, valid credentials for every one of them in the
 * vault and a worker running, each executor family (webhook, Stripe, Gmail,
 * OpenAI) gets directives that end denied by policy, awaiting approval,
 * rejected, cancelled and expired — and one approved control directive. The
 * controls reach their fakes, which proves the wiring; every other directive
 * leaves no trace at any fake (no call, no connection, no effect) and never
 * got as far as an execute job (no `directive.executing`, no execution).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { executionIdOfDirective } from '../../src/directives/execute.ts';
import { getDirective, type Directive } from '../../src/directives/store.ts';
import { decideDirective } from '../../src/directives/transitions.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { startGmailFake, type GmailFake } from '../fakes/gmail.ts';
import { startOpenAIFake, type OpenAIFake } from '../fakes/openai.ts';
import { startStripeFake, type StripeFake } from '../fakes/stripe.ts';
import { startWebhookSink, type WebhookSink } from '../fakes/webhook-sink.ts';
import { proposeAs } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { fanoutBacklog } from '../support/quiescent.ts';

const OPERATOR: Actor = { type: 'human', id: 'ops@only-approved.test' };
const STRIPE_KEY = `sk_test_only_approved_${randomBytes(12).toString('hex')}`;
const OPENAI_KEY = `sk-only-approved-${randomBytes(12).toString('hex')}`;
const WEBHOOK_SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const GMAIL_CLIENT_ID = 'only-approved.apps.googleusercontent.com';
const GMAIL_CLIENT_SECRET = `GOCSPX-${randomBytes(12).toString('hex')}`;
const GMAIL_REFRESH_TOKEN = `1//only-approved-${randomBytes(12).toString('hex')}`;

/** How a directive is meant to end; the policy reads it from the directive's params. */
type Case = 'deny' | 'review' | 'reject' | 'cancel' | 'expire' | 'go';
const HELD_CASES: Case[] = ['deny', 'review', 'reject', 'cancel', 'expire'];
const STATUS_OF: Record<Case, string> = {
  deny: 'rejected',
  review: 'awaiting_approval',
  reject: 'rejected',
  cancel: 'cancelled',
  expire: 'expired',
  go: 'succeeded',
};
/** What the policy sees: reject and cancel wait for a human like review does. */
const policyCase = (c: Case) => (c === 'reject' || c === 'cancel' ? 'review' : c);
const EXPIRY_TTL_SECONDS = 60;

interface Family {
  name: 'webhook' | 'stripe' | 'gmail' | 'openai';
  kind: string;
  /** The CEL expression of the params field carrying the case. */
  field: string;
  /** Params for a case, marked with `tag` so the fake's records can be matched to the directive before its id exists. */
  params(c: Case, tag: string): Record<string, unknown>;
}

let sink: WebhookSink;
let stripe: StripeFake;
let gmail: GmailFake;
let openai: OpenAIFake;

const FAMILIES: Family[] = [
  {
    name: 'webhook',
    kind: 'webhook.post',
    field: 'params.body.case',
    params: (c, tag) => ({ url: `${sink.url}/hooks/${tag}`, body: { case: policyCase(c), tag } }),
  },
  {
    name: 'stripe',
    kind: 'stripe.refund.create',
    field: 'params.metadata.case',
    params: (c, tag) => ({ payment_intent: `pi_${tag}`, amount: 100, metadata: { case: policyCase(c), tag } }),
  },
  {
    name: 'gmail',
    kind: 'gmail.send',
    field: 'params.subject',
    params: (c, tag) => ({ to: `reader-${tag}@example.com`, subject: policyCase(c), text: `tag ${tag}` }),
  },
  {
    name: 'openai',
    kind: 'openai.chat',
    field: 'params.messages[0].content',
    params: (c, tag) => ({
      model: 'gpt-4o-mini',
      max_tokens: 20,
      messages: [
        { role: 'system', content: policyCase(c) },
        { role: 'user', content: `tag ${tag}` },
      ],
    }),
  },
];

/** Per family: allow, but deny, hold, or hold with a short approval window as the case says. */
const POLICY = {
  rules: FAMILIES.flatMap(({ name, kind, field }) => [
    { id: `allow-${name}`, match: kind, effect: 'allow' },
    { id: `deny-${name}`, match: kind, when: `${field} == 'deny'`, effect: 'deny', reason: 'refused for the test' },
    { id: `review-${name}`, match: kind, when: `${field} == 'review'`, effect: 'require_approval', reason: 'held for a human' },
    {
      id: `expire-${name}`,
      match: kind,
      when: `${field} == 'expire'`,
      effect: 'require_approval',
      reason: 'held with a short window',
      approval_ttl_seconds: EXPIRY_TTL_SECONDS,
    },
  ]),
};

let t: TestApp;
let org: Tenant;
/** The directive verbs and the worker's tasks read this clock; moved forward to pass an approval window. */
let clockOffsetMs = 0;

interface Proposed {
  family: Family;
  c: Case;
  tag: string;
  directive: Directive;
}
const proposed: Proposed[] = [];

beforeAll(async () => {
  [sink, stripe, gmail, openai] = await Promise.all([
    startWebhookSink({ secret: WEBHOOK_SECRET }),
    startStripeFake({ apiKeys: [STRIPE_KEY] }),
    startGmailFake({ clientId: GMAIL_CLIENT_ID, clientSecret: GMAIL_CLIENT_SECRET, refreshTokens: [GMAIL_REFRESH_TOKEN] }),
    startOpenAIFake({ apiKey: OPENAI_KEY }),
  ]);
  t = await createTestApp({
    env: {
      SIGNALBUS_STRIPE_API_BASE: stripe.url,
      SIGNALBUS_OPENAI_BASE_URL: openai.baseUrl,
      SIGNALBUS_GOOGLE_API_BASE: gmail.url,
      SIGNALBUS_GOOGLE_OAUTH_BASE: gmail.url,
      SIGNALBUS_ALLOW_PRIVATE_TARGETS: 'true',
      SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '20',
    },
    now: () => new Date(Date.now() + clockOffsetMs),
  });
  org = await t.createOrg('only_approved');
  await setPolicy(t, org, POLICY);
  const vault = t.app.deps.vault;
  await putSecret(vault, { tenant: org, name: 'webhook_signing_secret', input: { value: WEBHOOK_SECRET } });
  await putSecret(vault, { tenant: org, name: 'stripe_api_key', input: { value: STRIPE_KEY } });
  await putSecret(vault, { tenant: org, name: 'openai_api_key', input: { value: OPENAI_KEY } });
  await putSecret(vault, {
    tenant: org,
    name: 'gmail_oauth',
    input: { value: JSON.stringify({ client_id: GMAIL_CLIENT_ID, client_secret: GMAIL_CLIENT_SECRET, refresh_token: GMAIL_REFRESH_TOKEN }) },
  });
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(async () => {
  await t?.close();
  await Promise.all([sink?.close(), stripe?.close(), gmail?.close(), openai?.close()]);
});

async function propose(family: Family, c: Case): Promise<Proposed> {
  const tag = `${family.name}${c}${randomBytes(6).toString('hex')}`;
  const directive = await proposeAs(t, { tenant: org, actor: OPERATOR }, { kind: family.kind, params: family.params(c, tag) });
  const entry = { family, c, tag, directive };
  proposed.push(entry);
  return entry;
}

const decide = (id: string, action: 'reject' | 'cancel') =>
  decideDirective(t.app.deps.bus.directives, { ctx: { tenant: org, actor: OPERATOR, source: 'api' }, input: { id, action, reason: `${action}ed by the test` } });

const statusOf = async (id: string) => (await getDirective(t.app.deps.sql, org, id)).status;

/** Lifecycle signals of one directive, by type. */
async function lifecycle(id: string): Promise<Record<string, number>> {
  const rows = await t.app.deps.sql<{ type: string; count: number }[]>`
    select type, count(*)::int as count from ${t.app.deps.sql(`${org.schema}.signals`)}
     where subject = ${`directive:${id}`} group by type`;
  return Object.fromEntries(rows.map((row) => [row.type, row.count]));
}

/** Jobs of a task still in the queue for these directives; `due` leaves out those scheduled for later. */
async function queuedJobs(task: string, ids: string[], { due = false } = {}): Promise<number> {
  const [row] = await t.app.deps.sql<{ count: number }[]>`
    select count(*)::int as count from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
     where k.identifier = ${task} and j.payload->>'directive_id' = any(${ids}::text[])
       and (not ${due} or j.run_at <= now() or j.locked_at is not null)`;
  return row!.count;
}

describe('only approved directives reach a provider', () => {
  it('the approval window of the expiring ones closes: the expire job records directive.expired', async () => {
    const expiring = await Promise.all(FAMILIES.map((family) => propose(family, 'expire')));
    const ids = expiring.map(({ directive }) => directive.id);
    for (const { directive } of expiring) {
      expect(directive.status).toBe('awaiting_approval');
      const window = new Date(directive.expires_at!).getTime() - new Date(directive.proposed_at).getTime();
      expect(window).toBeGreaterThan((EXPIRY_TTL_SECONDS - 5) * 1000);
      expect(window).toBeLessThanOrEqual((EXPIRY_TTL_SECONDS + 5) * 1000);
    }
    expect(await queuedJobs('expire_directive', ids)).toBe(ids.length);
    try {
      // Past the window by the app's clock; the expire jobs, due at expires_at
      // by the database's clock, are made due now so the worker runs them.
      clockOffsetMs = (EXPIRY_TTL_SECONDS + 1) * 1000;
      await t.app.deps.sql`
        select graphile_worker.reschedule_jobs(array_agg(j.id), run_at := now())
          from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
         where k.identifier = 'expire_directive' and j.payload->>'directive_id' = any(${ids}::text[])`;
      await waitFor(async () => {
        for (const id of ids) if ((await statusOf(id)) !== 'expired') return false;
        return (await queuedJobs('expire_directive', ids)) === 0;
      }, 20_000, 'the expire jobs to run');
    } finally {
      clockOffsetMs = 0;
    }
    for (const id of ids) expect(await lifecycle(id)).toEqual({ 'directive.proposed': 1, 'directive.expired': 1 });
  });

  it('directives denied, left waiting, rejected or cancelled stay where they are', async () => {
    for (const family of FAMILIES) {
      const denied = await propose(family, 'deny');
      expect(denied.directive).toMatchObject({ status: 'rejected', decision: { effect: 'deny', rule: `deny-${family.name}` } });
      const waiting = await propose(family, 'review');
      expect(waiting.directive).toMatchObject({ status: 'awaiting_approval', decision: { effect: 'require_approval', rule: `review-${family.name}` } });
      const rejected = await propose(family, 'reject');
      expect((await decide(rejected.directive.id, 'reject')).status).toBe('rejected');
      const cancelled = await propose(family, 'cancel');
      expect((await decide(cancelled.directive.id, 'cancel')).status).toBe('cancelled');
    }
  });

  it('one approved control per family reaches its fake, and nothing else reached any fake', async () => {
    const controls = await Promise.all(FAMILIES.map((family) => propose(family, 'go')));
    for (const { directive } of controls) expect(directive.status).toBe('approved');
    await waitFor(async () => {
      for (const { directive } of controls) if ((await statusOf(directive.id)) !== 'succeeded') return false;
      return true;
    }, 20_000, 'the control directives to succeed');
    // At rest: nothing due or running is left that could still call out.
    await waitFor(async () => {
      const backlog = await fanoutBacklog(t.app.deps.sql, org);
      return backlog.jobs === 0 && backlog.directives === 0 && backlog.executions === 0;
    }, 20_000, 'the org to come to rest');

    const held = proposed.filter(({ c }) => c !== 'go');
    expect(held).toHaveLength(FAMILIES.length * HELD_CASES.length);
    const heldIds = held.map(({ directive }) => directive.id);
    const heldTags = held.map(({ tag }) => tag);
    for (const { c, directive } of proposed) expect(await statusOf(directive.id)).toBe(STATUS_OF[c]);
    expect(await queuedJobs('execute_directive', proposed.map(({ directive }) => directive.id))).toBe(0);
    // Only the expiry jobs of the directives still waiting, due days from now, remain.
    expect(await queuedJobs('expire_directive', heldIds, { due: true })).toBe(0);

    const control = (name: Family['name']) => controls.find(({ family }) => family.name === name)!;

    // Webhook: one connection, one request, one delivery: the control's.
    const hook = control('webhook');
    expect(sink.calls).toEqual({ connections: 1, requests: 1, rejected: 0, effects: 1, duplicates: 0 });
    expect(sink.deliveries.map((delivery) => [delivery.webhookId, delivery.path])).toEqual([[hook.directive.id, `/hooks/${hook.tag}`]]);
    for (const { tag } of held) expect(sink.requestsAt(`/hooks/${tag}`)).toBe(0);

    // Stripe: one call and one refund, under the control's idempotency key.
    const refund = control('stripe');
    expect(stripe.calls.map((call) => [call.idempotencyKey, call.path, call.status])).toEqual([[refund.directive.id, 'refunds', 200]]);
    expect(stripe.effects.map((effect) => effect.idempotencyKey)).toEqual([refund.directive.id]);
    expect(stripe.calls.filter((call) => heldIds.includes(call.idempotencyKey ?? ''))).toEqual([]);

    // Gmail: one token refresh and one send, of the control's message.
    const mail = control('gmail');
    expect(gmail.calls.map((call) => call.endpoint).sort()).toEqual(['messages.send', 'token']);
    expect([...gmail.messages.values()].map((message) => message.directiveId)).toEqual([mail.directive.id]);
    expect(gmail.effects).toHaveLength(1);
    expect([...gmail.messages.values()].filter((message) => heldIds.includes(message.directiveId ?? ''))).toEqual([]);

    // OpenAI: one completion, for the control's prompt.
    const chat = control('openai');
    expect(openai.calls).toEqual({ chatCompletions: 1, unauthorized: 0 });
    expect(openai.requests.map((request) => request.body.messages?.at(-1)?.content)).toEqual([`tag ${chat.tag}`]);
    const prompts = JSON.stringify(openai.requests.map((request) => request.body));
    for (const tag of heldTags) expect(prompts).not.toContain(tag);

    // None of them was ever claimed for execution.
    for (const { directive, c } of held) {
      const signals = await lifecycle(directive.id);
      expect(signals['directive.executing'], `${directive.kind} ${c}`).toBeUndefined();
      expect(signals['execution.started'], `${directive.kind} ${c}`).toBeUndefined();
    }
    const executions = await t.app.deps.sql<{ id: string }[]>`
      select id from ${t.app.deps.sql(`${org.schema}.executions`)} where id = any(${heldIds.map(executionIdOfDirective)}::text[])`;
    expect(executions).toEqual([]);
    // While each control ran exactly once: claimed first, except a webhook, whose receiver deduplicates.
    for (const { directive } of controls) {
      const signals = await lifecycle(directive.id);
      expect(signals, directive.kind).toMatchObject({ 'directive.succeeded': 1, 'execution.succeeded': 1 });
      expect(signals['directive.executing'] ?? 0, directive.kind).toBe(directive.kind === 'webhook.post' ? 0 : 1);
    }
  });
});
