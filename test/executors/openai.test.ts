/**
 * `openai.chat` end to end: proposals through the policy, a worker running
 * the real `openai` SDK against the fake OpenAI on loopback, and the outcome
 * recorded in the database — tokens and cost on the execution and the
 * directive, structured output validated and kept as evidence, derived
 * signals recorded once, the budget guard refusing what it cannot afford
 * before any call, and provider failures mapped to retry, permanent failure
 * or re-authorization. A canary API key is then looked for everywhere.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import { executeDirective, executionIdOfDirective } from '../../src/directives/execute.ts';
import { getDirective, type Directive } from '../../src/directives/store.ts';
import { createOpenAIExecutor } from '../../src/executors/openai/executor.ts';
import type { ChatParams } from '../../src/executors/openai/params.ts';
import { DEFAULT_MODEL_PRICES } from '../../src/executors/openai/prices.ts';
import type { ExecuteRequest } from '../../src/executors/registry.ts';
import type { ExecutionFailed } from '../../src/executions/model.ts';
import { getExecution } from '../../src/executions/read.ts';
import { putSecret } from '../../src/secrets/vault.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { fakeUsage, startOpenAIFake, type OpenAIFake } from '../fakes/openai.ts';
import { directRequest, finishedDirective, proposeApproved, proposeAs } from '../support/directives.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

const OPS: Actor = { type: 'human', id: 'ops@openai.test' };
/** A canary: it must reach the fake and nothing else. */
const API_KEY = `sk-test-canary-${randomBytes(12).toString('hex')}`;
/** Configured prices: one list price doubled, one model only configuration knows. */
const PRICE_OVERRIDES = {
  'gpt-4o-mini': { input_per_1m: 0.3, output_per_1m: 1.2 },
  'house-model': { input_per_1m: 1, output_per_1m: 2 },
};
const ALLOW_OPENAI = { rules: [{ id: 'allow-openai', match: 'openai.*', effect: 'allow' }] };

const TRIAGE_SCHEMA = {
  type: 'object',
  properties: {
    label: { type: 'string', enum: ['spam', 'ham'] },
    score: { type: 'number', minimum: 0, maximum: 1 },
  },
  required: ['label', 'score'],
  additionalProperties: false,
};

let fake: OpenAIFake;
let t: TestApp;
let org: Tenant;

beforeAll(async () => {
  fake = await startOpenAIFake({ apiKey: API_KEY });
  t = await createTestApp({
    env: {
      SIGNALBUS_OPENAI_BASE_URL: fake.baseUrl,
      SIGNALBUS_OPENAI_PRICES: JSON.stringify(PRICE_OVERRIDES),
      SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '20',
    },
  });
  org = await t.createOrg('openai');
  await setPolicy(t, org, ALLOW_OPENAI);
  await putSecret(t.app.deps.vault, { tenant: org, name: 'openai_api_key', input: { value: API_KEY } });
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});

let n = 0;
const ask = (content: string) => [
  { role: 'system' as const, content: 'You answer briefly.' },
  { role: 'user' as const, content: `${content} (#${++n})` },
];

const propose = (params: Record<string, unknown>, tenant: Tenant = org) => proposeAs(t, { tenant, actor: OPS }, { kind: 'openai.chat', params });
const run = async (params: Record<string, unknown>, tenant: Tenant = org): Promise<Directive> =>
  finishedDirective(t, tenant, (await proposeApproved(t, { tenant, actor: OPS }, { kind: 'openai.chat', params })).id, 15_000);

/** Requests the fake received for this directive's prompt (each test's prompt is unique). */
const requestsFor = (messages: { content: string }[]) =>
  fake.requests.filter((request) => request.body.messages?.at(-1)?.content === messages.at(-1)!.content);

async function failures(directiveId: string): Promise<ExecutionFailed[]> {
  const rows = await t.app.deps.sql<{ payload: ExecutionFailed }[]>`
    select payload from ${t.app.deps.sql(`${org.schema}.signals`)}
     where type = 'execution.failed' and payload->>'directive_id' = ${directiveId}
     order by (payload->>'attempt')::int`;
  return rows.map((row) => row.payload);
}

const usd = (price: { input_per_1m: number; output_per_1m: number }, usage: { prompt_tokens: number; completion_tokens: number }) =>
  (usage.prompt_tokens * price.input_per_1m + usage.completion_tokens * price.output_per_1m) / 1_000_000;

describe('openai.chat', () => {
  it('completes a chat and records tokens and cost on the execution and the directive', async () => {
    const messages = ask('Say hello');
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 200, temperature: 0.2 });
    const content = `Echo: ${messages[1]!.content}`;
    expect(directive).toMatchObject({
      status: 'succeeded',
      attempts: 1,
      error: null,
      result: { model: 'gpt-4o', finish_reason: 'stop', schema: null, output: content },
    });
    expect((directive.result as { id: string }).id).toMatch(/^chatcmpl-fake/);

    const usage = fakeUsage(messages, content);
    const expected = usd(DEFAULT_MODEL_PRICES['gpt-4o']!, usage);
    expect(directive.cost_usd).toBeCloseTo(expected, 12);
    // The estimate that the budget counted before the call is an upper bound.
    expect(directive.estimated_cost_usd).toBeGreaterThanOrEqual(directive.cost_usd!);
    const execution = await getExecution(t.app.deps.sql, org, executionIdOfDirective(directive.id));
    expect(execution).toMatchObject({ status: 'succeeded', tokens_in: usage.prompt_tokens, tokens_out: usage.completion_tokens });
    expect(execution.cost_usd).toBeCloseTo(expected, 12);

    const [request] = requestsFor(messages);
    expect(request!.body).toMatchObject({ model: 'gpt-4o', messages, max_completion_tokens: 200, temperature: 0.2 });
    expect(request!.body.response_format).toBeUndefined();
  });

  it('validates a structured output, keeps it as evidence and emits the derived signal', async () => {
    const messages = ask('Triage: cheap watches!!!');
    const directive = await run({
      model: 'gpt-4o',
      messages,
      max_tokens: 100,
      response_schema: { name: 'triage', schema: TRIAGE_SCHEMA, strict: true },
      emit: { type: 'ticket.triaged', subject: 'ticket:42' },
    });
    const output = { label: 'spam', score: 0 };
    expect(directive).toMatchObject({ status: 'succeeded', result: { schema: 'triage', finish_reason: 'stop', output } });
    expect(requestsFor(messages)[0]!.body.response_format).toEqual({
      type: 'json_schema',
      json_schema: { name: 'triage', schema: TRIAGE_SCHEMA, strict: true },
    });

    const derived = await t.app.deps.sql<{ id: string; subject: string; payload: Record<string, unknown>; correlation_id: string | null }[]>`
      select id, subject, payload, correlation_id from ${t.app.deps.sql(`${org.schema}.signals`)}
       where type = 'ticket.triaged' and payload->>'directive_id' = ${directive.id}`;
    expect(derived).toHaveLength(1);
    expect(derived[0]).toMatchObject({
      subject: 'ticket:42',
      payload: { output, model: 'gpt-4o', schema: 'triage', directive_id: directive.id, completion_id: (directive.result as { id: string }).id },
      correlation_id: directive.correlation_id,
    });
    const execution = await getExecution(t.app.deps.sql, org, executionIdOfDirective(directive.id));
    expect(execution.outputs).toMatchObject({ signals: [derived[0]!.id] });
  });

  it('fails a structured output that breaks its schema as invalid_structured_output, without retrying', async () => {
    const messages = ask('Triage: hello friend');
    fake.failNext('invalid_output', { output: JSON.stringify({ label: 'eggs', score: 7 }) });
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 100, response_schema: { name: 'triage', schema: TRIAGE_SCHEMA } });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalid_structured_output' } });
    expect(directive.error!.message).toMatch(/label/);
    // The message names what is wrong, not what the model said.
    expect(directive.error!.message).not.toContain('eggs');
    expect(requestsFor(messages)).toHaveLength(1);

    const notJson = ask('Triage: plain words');
    fake.failNext('invalid_output', { output: 'spam, probably' });
    const second = await run({ model: 'gpt-4o', messages: notJson, max_tokens: 100, response_schema: { name: 'triage', schema: TRIAGE_SCHEMA } });
    expect(second.error).toEqual({ code: 'invalid_structured_output', message: 'the output is not JSON' });
  });

  it('records the derived signal once when a worker presumed dead records the outcome too', async () => {
    const messages = ask('Triage: a slow one');
    // The worker's call is answered late, after a second attempt has already been recorded.
    fake.failNext('delay', { delayMs: 1200 });
    fake.setOutput({ label: 'ham', score: 0.25 });
    const directive = await propose({
      model: 'gpt-4o',
      messages,
      max_tokens: 100,
      response_schema: { name: 'triage', schema: TRIAGE_SCHEMA },
      emit: { type: 'ticket.triaged' },
    });
    await waitFor(() => requestsFor(messages).length === 1, 10_000, 'the worker to call OpenAI');
    // Another run finds the attempt claimed and unfinished: the outcome is
    // unknown, and a chat completion may be repeated (honorsIdempotencyKey).
    // A real model answers differently the second time.
    fake.setOutput({ label: 'spam', score: 0.75 });
    await executeDirective(t.app.deps.bus.directives, { tenant: org, directiveId: directive.id, traceparent: null });
    expect(requestsFor(messages)).toHaveLength(2);
    const recorded = await getDirective(t.app.deps.sql, org, directive.id);
    expect(recorded).toMatchObject({ status: 'succeeded', result: { output: { label: 'spam', score: 0.75 } } });

    // The worker's late answer arrives; its recording must add nothing. (Its
    // derived signal differs from the recorded one, so today that recording
    // fails on the dedupe key and the job is retried by graphile-worker, to
    // find the directive finished.)
    await waitFor(() => requestsFor(messages)[0]!.status === 200, 10_000, 'the delayed answer');
    await waitFor(async () => {
      const [row] = await t.app.deps.sql<{ count: number }[]>`
        select count(*)::int as count from graphile_worker._private_jobs where key = ${`directive:${directive.id}`}`;
      return row!.count === 0;
    }, 15_000, "the worker's execute job to complete");
    fake.setOutput(undefined);

    const signals = await t.app.deps.sql<{ type: string; payload: { output?: unknown } }[]>`
      select type, payload from ${t.app.deps.sql(`${org.schema}.signals`)}
       where (subject = ${`directive:${directive.id}`} or payload->>'directive_id' = ${directive.id})
         and type in ('ticket.triaged', 'directive.succeeded', 'execution.succeeded')`;
    expect(signals.map((signal) => signal.type).sort()).toEqual(['directive.succeeded', 'execution.succeeded', 'ticket.triaged']);
    expect(signals.find((signal) => signal.type === 'ticket.triaged')!.payload.output).toEqual({ label: 'spam', score: 0.75 });
    expect(await getDirective(t.app.deps.sql, org, directive.id)).toMatchObject({ result: { output: { label: 'spam', score: 0.75 } } });
  });

  it('honours Retry-After on a 429, then succeeds', async () => {
    const messages = ask('Busy?');
    fake.failNext('rate_limited', { retryAfterSeconds: 1 });
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 50 });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    const [first, second] = requestsFor(messages);
    expect([first!.status, second!.status]).toEqual([429, 200]);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
    const [failure] = await failures(directive.id);
    expect(failure).toMatchObject({ attempt: 1, final: false, error: { code: 'rate_limit_exceeded' } });
    expect(new Date(failure!.retry_at!).getTime() - new Date(failure!.finished_at).getTime()).toBeGreaterThanOrEqual(1000);
  });

  it('retries a server error', async () => {
    const messages = ask('Are you up?');
    fake.failNext('server_error');
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 50 });
    expect(directive).toMatchObject({ status: 'succeeded', attempts: 2 });
    expect(requestsFor(messages).map((request) => request.status)).toEqual([500, 200]);
  });

  it('fails a 400 for good with the API code, after one call', async () => {
    const messages = ask('Hot take');
    // A provider that echoes the key in an error must not get it stored.
    fake.failNext('bad_request', { code: 'invalid_value', message: `Invalid value for 'temperature' (key ${API_KEY}).` });
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 50, temperature: 1.5 });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalid_value' } });
    expect(directive.error!.message).toContain("Invalid value for 'temperature'");
    expect(directive.error!.message).toContain('[redacted]');
    expect(requestsFor(messages)).toHaveLength(1);
  });

  it('asks for re-authorization when OpenAI refuses the key', async () => {
    const messages = ask('Who am I?');
    fake.failNext('unauthorized');
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 50 });
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'needs_reauthorization' } });
    expect(requestsFor(messages)).toHaveLength(1);
    const notices = await t.app.deps.sql<{ subject: string; payload: Record<string, unknown> }[]>`
      select subject, payload from ${t.app.deps.sql(`${org.schema}.signals`)}
       where type = 'secret.reauthorization_required' and payload->>'directive_id' = ${directive.id}`;
    expect(notices).toMatchObject([{ subject: 'secret:org/openai_api_key', payload: { name: 'openai_api_key', error: { code: 'invalid_api_key' } } }]);
  });

  it('fails without calling OpenAI when the org has no key', async () => {
    const keyless = await t.createOrg('openai_keyless');
    await setPolicy(t, keyless, ALLOW_OPENAI);
    const messages = ask('Anyone?');
    const directive = await run({ model: 'gpt-4o', messages, max_tokens: 50 }, keyless);
    expect(directive).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'missing_credential' } });
    expect(directive.error!.message).toContain('openai_api_key');
    expect(requestsFor(messages)).toHaveLength(0);
  });

  it('prices with the configured table: an override changes the cost, an unpriced model is refused at proposal', async () => {
    const messages = ask('Cheap question');
    const directive = await run({ model: 'gpt-4o-mini', messages, max_tokens: 50 });
    const usage = fakeUsage(messages, `Echo: ${messages[1]!.content}`);
    expect(directive.cost_usd).toBeCloseTo(usd(PRICE_OVERRIDES['gpt-4o-mini'], usage), 12);
    expect(directive.cost_usd).not.toBeCloseTo(usd(DEFAULT_MODEL_PRICES['gpt-4o-mini']!, usage), 12);
    const execution = await getExecution(t.app.deps.sql, org, executionIdOfDirective(directive.id));
    expect(execution.cost_usd).toBeCloseTo(usd(PRICE_OVERRIDES['gpt-4o-mini'], usage), 12);

    // A model only configuration prices is accepted; one nobody prices is a 422.
    expect(await run({ model: 'house-model', messages: ask('In-house'), max_tokens: 20 })).toMatchObject({ status: 'succeeded' });
    const before = fake.calls.chatCompletions;
    const refused = (await propose({ model: 'mystery-model', messages: ask('?'), max_tokens: 20 }).catch((error: unknown) => error)) as DomainError;
    expect(refused).toBeInstanceOf(DomainError);
    expect(refused.code).toBe('validation_failed');
    expect(refused.errors).toEqual([{ path: 'params.model', message: 'no price is known for model mystery-model; add one with SIGNALBUS_OPENAI_PRICES' }]);
    expect(fake.calls.chatCompletions).toBe(before);
  });

  it('refuses params it cannot bound or trust at proposal', async () => {
    const cases: Record<string, unknown>[] = [
      { model: 'gpt-4o', messages: ask('no bound') },
      { model: 'gpt-4o', messages: ask('too big'), max_tokens: 1_000_000 },
      { model: 'gpt-4o', messages: [], max_tokens: 10 },
      { model: 'gpt-4o', messages: [{ role: 'tool', content: 'x' }], max_tokens: 10 },
      { model: 'gpt-4o', messages: ask('forge'), max_tokens: 10, emit: { type: 'directive.succeeded' } },
      { model: 'gpt-4o', messages: ask('bad name'), max_tokens: 10, response_schema: { name: 'has space', schema: TRIAGE_SCHEMA } },
      { model: 'gpt-4o', messages: ask('uncheckable'), max_tokens: 10, response_schema: { name: 's', schema: { if: { type: 'string' }, then: { minLength: 2 } } } },
    ];
    for (const params of cases) {
      const refused = (await propose(params).catch((error: unknown) => error)) as DomainError;
      expect(refused, JSON.stringify(params)).toBeInstanceOf(DomainError);
      expect(refused.code).toBe('validation_failed');
    }
  });
});

describe('the budget guard', () => {
  it('denies at proposal a chat whose estimate would pass the monthly budget; OpenAI is never called', async () => {
    const frugal = await t.createOrg('openai_frugal');
    await setPolicy(t, frugal, { ...ALLOW_OPENAI, guards: { budgets: [{ match: 'openai.*', monthly_usd: 0.01 }] } });
    await putSecret(t.app.deps.vault, { tenant: frugal, name: 'openai_api_key', input: { value: API_KEY } });

    // Fits: a few hundred tokens of gpt-4o-mini.
    const small = await run({ model: 'gpt-4o-mini', messages: ask('Small'), max_tokens: 100 }, frugal);
    expect(small.status).toBe('succeeded');

    // 1,000 output tokens of gpt-4o alone cost the whole $0.01.
    const before = fake.calls.chatCompletions;
    const messages = ask('Write an essay');
    const denied = await propose({ model: 'gpt-4o', messages, max_tokens: 1000 }, frugal);
    expect(denied.status).toBe('rejected');
    expect(denied.estimated_cost_usd).toBeGreaterThan(0.01);
    expect(denied.decision).toMatchObject({ effect: 'deny', rule: 'guard:budget' });
    expect(denied.decision.guards).toMatchObject([{ guard: 'budget', match: 'openai.*', passed: false }]);
    // A denied proposal enqueues no execute job, so nothing can ever call OpenAI for it.
    const [jobs] = await t.app.deps.sql<{ count: number }[]>`
      select count(*)::int as count from graphile_worker._private_jobs where key = ${`directive:${denied.id}`}`;
    expect(jobs!.count).toBe(0);
    expect(requestsFor(messages)).toHaveLength(0);
    expect(fake.calls.chatCompletions).toBe(before);
    expect((await getDirective(t.app.deps.sql, frugal, denied.id)).status).toBe('rejected');
  });
});

describe('the executor alone', () => {
  const request = (baseUrlParams: Partial<ChatParams> = {}): ExecuteRequest<ChatParams> =>
    directRequest({
      directiveId: 'dir_direct',
      kind: 'openai.chat',
      params: { model: 'gpt-4o', messages: ask('direct'), max_tokens: 10, ...baseUrlParams },
      idempotencyKey: 'dir_direct',
      orgId: 'org_direct',
      secrets: { openai_api_key: API_KEY },
    });

  it('gives up on a hung call after its timeout, as retryable', async () => {
    fake.failNext('hang');
    const executor = createOpenAIExecutor({ baseUrl: fake.baseUrl, timeoutMs: 300 });
    const started = Date.now();
    const outcome = await executor.execute(request());
    expect(outcome).toEqual({ outcome: 'retryable', error: { code: 'timeout', message: 'OpenAI did not answer in time' } });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('retries when OpenAI cannot be reached, and stops when the account is out of credit', async () => {
    const gone = await startOpenAIFake();
    await gone.close();
    const unreachable = await createOpenAIExecutor({ baseUrl: gone.baseUrl, timeoutMs: 2000 }).execute(request());
    expect(unreachable).toMatchObject({ outcome: 'retryable', error: { code: 'connection_error' } });

    fake.failNext('insufficient_quota');
    const broke = await createOpenAIExecutor({ baseUrl: fake.baseUrl }).execute(request());
    expect(broke).toMatchObject({ outcome: 'permanent', error: { code: 'insufficient_quota' } });

    fake.failNext('rate_limited', { retryAfterMs: 1500 });
    const limited = await createOpenAIExecutor({ baseUrl: fake.baseUrl }).execute(request());
    expect(limited).toMatchObject({ outcome: 'retryable', retryAfterMs: 1500 });
  });
});

describe('the API key', () => {
  it('appears in no row, signal, job or log line', async () => {
    expect(fake.calls.chatCompletions).toBeGreaterThan(0);
    const sql = t.app.deps.sql;
    const tables = await sql<{ schema: string; name: string }[]>`
      select table_schema as schema, table_name as name from information_schema.tables
       where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`;
    expect(tables.length).toBeGreaterThan(3);
    for (const table of tables) {
      const [row] = await sql<{ count: number }[]>`
        select count(*)::int as count from ${sql(`${table.schema}.${table.name}`)} as r where r::text like ${`%${API_KEY}%`}`;
      expect(row!.count, `${table.schema}.${table.name}`).toBe(0);
    }
    expect(t.logs.length).toBeGreaterThan(0);
    expect(t.logs.join('\n')).not.toContain(API_KEY);
  });
});
