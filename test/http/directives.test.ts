/**
 * The directive operations over HTTP, against a real database and a running
 * worker: propose (idempotent by key), list, get, approve, reject, cancel and
 * simulate. Per route a happy case, an error case and a security case (a
 * weak role gets 403, another org's key 404, and neither writes anything).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { newId } from '../../src/core/ids.ts';
import { executionIdOfDirective } from '../../src/directives/execute.ts';
import type { Directive } from '../../src/directives/store.ts';
import type { Executor } from '../../src/executors/registry.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { HOLD_POLICY } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp, type TestResponse } from '../support/harness.ts';

/** A kind no rule of HOLD_POLICY covers: policy denies it (fail-closed). */
const unlistedExecutor: Executor<Record<string, unknown>> = {
  kinds: ['test.unlisted'],
  params: z.object({ to: z.string().email() }),
  estimateCostUsd: () => 0.25,
  honorsIdempotencyKey: true,
  async execute() {
    throw new Error('a denied directive must never execute');
  },
};

let t: TestApp;
let org: Tenant;
let other: Tenant;
let quiet: Tenant;
const keys = {} as Record<'viewer' | 'operator' | 'admin' | 'otherOperator' | 'quietOperator' | 'support', string>;

const path = (tenant: Tenant, rest: string) => `/v1/orgs/${tenant.slug}${rest}`;
const call = (method: string, rest: string, key: string, body?: unknown, tenant = org) =>
  t.request(method, path(tenant, rest), { key, ...(body !== undefined ? { body } : {}) });

function expectProblem(response: TestResponse, status: number, code: string) {
  expect(response.status, response.text).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/problem+json');
  expect(response.body.code).toBe(code);
}

async function propose(params: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Directive> {
  const response = await call('POST', '/directives', keys.operator, { kind: 'noop.record', params, ...extra });
  expect(response.status, response.text).toBe(201);
  return response.body.directive;
}

const held = () => propose({ hold: true, n: newId('request') });

async function statusOf(id: string, tenant = org): Promise<string> {
  const [row] = await t.app.deps.sql<{ status: string }[]>`select status from ${t.app.deps.sql(`${tenant.schema}.directives`)} where id = ${id}`;
  return row!.status;
}

/** Waits until no job of `tenant` is due and no directive is on its way to execution. */
async function idle(tenant: Tenant) {
  const sql = t.app.deps.sql;
  await waitFor(async () => {
    const [row] = await sql<{ due: number; busy: number }[]>`
      select (select count(*)::int from graphile_worker._private_jobs where payload->>'org_id' = ${tenant.id} and run_at <= now()) as due,
             (select count(*)::int from ${sql(`${tenant.schema}.directives`)} where status in ('approved', 'executing')) as busy`;
    return row!.due === 0 && row!.busy === 0;
  }, 15_000, `${tenant.slug} to be idle`);
}

/** Everything a directive operation could write for `tenant`: signals, directives, jobs. Call `idle` first. */
async function footprint(tenant: Tenant) {
  const sql = t.app.deps.sql;
  const [row] = await sql<{ signals: number; directives: number; jobs: number }[]>`
    select (select count(*)::int from ${sql(`${tenant.schema}.signals`)}) as signals,
           (select count(*)::int from ${sql(`${tenant.schema}.directives`)}) as directives,
           (select count(*)::int from graphile_worker._private_jobs where payload->>'org_id' = ${tenant.id}) as jobs`;
  return row!;
}

beforeAll(async () => {
  t = await createTestApp({ executors: [unlistedExecutor] });
  org = await t.createOrg('dir_a');
  other = await t.createOrg('dir_b');
  quiet = await t.createOrg('dir_quiet');
  keys.viewer = await t.createKey(org, 'viewer');
  keys.operator = await t.createKey(org, 'operator');
  keys.admin = await t.createKey(org, 'admin');
  keys.otherOperator = await t.createKey(other, 'operator');
  keys.quietOperator = await t.createKey(quiet, 'operator');
  keys.support = (
    await createApiKey(t.app.deps, {
      tenant: null,
      input: { name: 'support', role: 'support', actor: { type: 'human', id: 'support@signalbus.test' } },
      by: PLATFORM_ACTOR,
    })
  ).secret;
  for (const [tenant, key] of [
    [org, keys.admin],
    [other, await t.createKey(other, 'admin')],
    [quiet, await t.createKey(quiet, 'admin')],
  ] as const) {
    const policy = await call('PUT', '/policies', key, {
      ...HOLD_POLICY,
      guards: { rate_limits: [{ match: 'noop.*', limit: 1000, window_seconds: 3600 }] },
    }, tenant);
    expect(policy.status, policy.text).toBe(200);
  }
  await t.startWorker({ pollIntervalMs: 50 });
});
afterAll(() => t.close());

describe('POST /v1/orgs/{org}/directives', () => {
  it('proposes, decides by policy and records the key holder as the actor; an allowed one executes', async () => {
    const response = await call('POST', '/directives', keys.operator, { kind: 'noop.record', params: { order: 'o1' }, idempotency_key: 'order-o1' });
    expect(response.status, response.text).toBe(201);
    const directive: Directive = response.body.directive;
    expect(directive).toMatchObject({
      kind: 'noop.record',
      params: { order: 'o1' },
      idempotency_key: 'order-o1',
      actor: { type: 'human', id: 'operator@dir_a.test' },
      status: 'approved',
      decision: { effect: 'allow', rule: 'allow-noop' },
      estimated_cost_usd: 0,
    });
    expect(directive.id).toMatch(/^dir_/);
    expect(directive.decision.guards).toEqual([expect.objectContaining({ guard: 'rate_limit', passed: true })]);
    await waitFor(async () => (await statusOf(directive.id)) === 'succeeded', 15_000, 'the directive to execute');
    const got = await call('GET', `/directives/${directive.id}`, keys.viewer);
    expect(got.body.directive).toMatchObject({ status: 'succeeded', result: { order: 'o1' }, attempts: 1 });
  });

  it('answers a repeat with the same key and content with 200 and the same directive, writing nothing', async () => {
    const body = { kind: 'noop.record', params: { hold: true, repeat: 1 }, idempotency_key: 'repeat-1' };
    const first = await call('POST', '/directives', keys.operator, body);
    expect(first.status).toBe(201);
    await idle(org);
    const before = await footprint(org);
    const again = await call('POST', '/directives', keys.admin, body);
    expect(again.status, again.text).toBe(200);
    expect(again.body.directive).toEqual(first.body.directive);
    expect(await footprint(org)).toEqual(before);
  });

  it('takes the key from the Idempotency-Key header when the body names none', async () => {
    const send = () =>
      t.request('POST', path(org, '/directives'), {
        key: keys.operator,
        headers: { 'idempotency-key': 'header-key-1' },
        body: { kind: 'noop.record', params: { hold: true, via: 'header' } },
      });
    const first = await send();
    expect(first.status, first.text).toBe(201);
    expect(first.body.directive.idempotency_key).toBe('header-key-1');
    const again = await send();
    expect(again.status).toBe(200);
    expect(again.body.directive.id).toBe(first.body.directive.id);
  });

  it('refuses the same key with other content: 409 idempotency_conflict, nothing written', async () => {
    await propose({ hold: true, amount: 1 }, { idempotency_key: 'conflict-1' });
    await idle(org);
    const before = await footprint(org);
    expectProblem(
      await call('POST', '/directives', keys.operator, { kind: 'noop.record', params: { hold: true, amount: 2 }, idempotency_key: 'conflict-1' }),
      409,
      'idempotency_conflict',
    );
    expect(await footprint(org)).toEqual(before);
  });

  it('answers an unknown kind, a malformed kind and bad params with 422 naming the field', async () => {
    await idle(org);
    const before = await footprint(org);
    const unknown = await call('POST', '/directives', keys.operator, { kind: 'mail.teleport', params: {} });
    expectProblem(unknown, 422, 'validation_failed');
    expect(unknown.body.errors).toEqual([expect.objectContaining({ path: 'kind' })]);
    const malformed = await call('POST', '/directives', keys.operator, { kind: 'Not A Kind', params: {} });
    expectProblem(malformed, 422, 'validation_failed');
    expect(malformed.body.errors.map((error: { path: string }) => error.path)).toContain('kind');
    const badParams = await call('POST', '/directives', keys.operator, { kind: 'test.unlisted', params: { to: 'not-an-address' } });
    expectProblem(badParams, 422, 'validation_failed');
    expect(badParams.body.errors).toEqual([expect.objectContaining({ path: 'params.to' })]);
    const notObject = await call('POST', '/directives', keys.operator, { kind: 'noop.record', params: 'x' });
    expectProblem(notObject, 422, 'validation_failed');
    expect(await footprint(org)).toEqual(before);
  });

  it('records a directive no rule allows as rejected by the fail-closed default, and never executes it', async () => {
    const response = await call('POST', '/directives', keys.operator, { kind: 'test.unlisted', params: { to: 'ana@example.test' } });
    expect(response.status).toBe(201);
    expect(response.body.directive).toMatchObject({
      status: 'rejected',
      decision: { effect: 'deny', rule: null },
      estimated_cost_usd: 0.25,
    });
  });

  it('refuses a viewer (403) and another org’s operator (404), writing nothing', async () => {
    await idle(org);
    const before = await footprint(org);
    const body = { kind: 'noop.record', params: { hold: true } };
    expectProblem(await call('POST', '/directives', keys.viewer, body), 403, 'forbidden');
    expectProblem(await call('POST', '/directives', keys.support, body), 403, 'forbidden');
    expectProblem(await call('POST', '/directives', keys.otherOperator, body), 404, 'not_found');
    expect(await footprint(org)).toEqual(before);
  });
});

describe('GET /v1/orgs/{org}/directives', () => {
  it('filters by status and kind and pages with next_cursor, in proposal order, to every reader', async () => {
    const mine = [await held(), await held(), await held()].map((directive) => directive.id);
    const awaiting = await call('GET', '/directives?status=awaiting_approval&kind=noop.record&limit=1000', keys.viewer);
    expect(awaiting.status).toBe(200);
    expect(awaiting.body.data.every((directive: Directive) => directive.status === 'awaiting_approval')).toBe(true);
    expect(awaiting.body.data.map((directive: Directive) => directive.id)).toEqual(expect.arrayContaining(mine));
    const denied = await call('GET', '/directives?kind=test.unlisted', keys.support);
    expect(denied.status).toBe(200);
    expect(denied.body.data.every((directive: Directive) => directive.kind === 'test.unlisted')).toBe(true);

    const all = (await call('GET', '/directives?limit=1000', keys.viewer)).body;
    expect(all.next_cursor).toBeNull();
    const walked: string[] = [];
    let after: string | null = null;
    do {
      const query: string = after ? `?limit=2&after=${after}` : '?limit=2';
      const page = await call('GET', `/directives${query}`, keys.viewer);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      walked.push(...page.body.data.map((directive: Directive) => directive.id));
      after = page.body.next_cursor;
    } while (after);
    expect(walked).toEqual(all.data.map((directive: Directive) => directive.id));
    expect([...walked].sort()).toEqual(walked);
  });

  it('answers a bad status or limit with 422', async () => {
    expectProblem(await call('GET', '/directives?status=pending', keys.viewer), 422, 'validation_failed');
    expectProblem(await call('GET', '/directives?limit=0', keys.viewer), 422, 'validation_failed');
    expectProblem(await call('GET', '/directives?limit=1001', keys.viewer), 422, 'validation_failed');
  });

  it("answers another org's key with 404, and lists only the path's org", async () => {
    expectProblem(await call('GET', '/directives', keys.otherOperator), 404, 'not_found');
    const mine = await held();
    const theirs = await call('GET', '/directives?limit=1000', keys.otherOperator, undefined, other);
    expect(theirs.status).toBe(200);
    expect(theirs.text).not.toContain(mine.id);
  });
});

describe('GET /v1/orgs/{org}/directives/{id}', () => {
  it('returns the directive with its decision', async () => {
    const directive = await held();
    const response = await call('GET', `/directives/${directive.id}`, keys.viewer);
    expect(response.status).toBe(200);
    expect(response.body.directive).toEqual(directive);
    expect(response.body.directive.decision).toMatchObject({ effect: 'require_approval', rule: 'hold', reason: 'held for review' });
    expect(response.body.directive.expires_at).not.toBeNull();
  });

  it('answers 404 for an unknown id and for ids that are not directive-shaped', async () => {
    const directive = await held();
    for (const id of [newId('directive'), executionIdOfDirective(directive.id), 'nope', `${directive.id}x`, 'dir_%25']) {
      expectProblem(await call('GET', `/directives/${id}`, keys.viewer), 404, 'not_found');
    }
  });

  it("answers another org's key 404, and its own org 404 for this org's id", async () => {
    const directive = await held();
    expectProblem(await call('GET', `/directives/${directive.id}`, keys.otherOperator), 404, 'not_found');
    expectProblem(await call('GET', `/directives/${directive.id}`, keys.otherOperator, undefined, other), 404, 'not_found');
  });
});

describe('approve, reject and cancel', () => {
  it('approves a directive awaiting approval as the key’s actor, and the worker then executes it', async () => {
    const directive = await held();
    expect(directive.status).toBe('awaiting_approval');
    const approved = await call('POST', `/directives/${directive.id}/approve`, keys.operator, { reason: 'looks right' });
    expect(approved.status, approved.text).toBe(200);
    expect(approved.body.directive).toMatchObject({
      id: directive.id,
      decided_by: { type: 'human', id: 'operator@dir_a.test' },
      decision_reason: 'looks right',
    });
    // Read in the approving transaction, before any worker could pick it up.
    expect(approved.body.directive.status).toBe('approved');
    await waitFor(async () => (await statusOf(directive.id)) === 'succeeded', 15_000, 'the approved directive to execute');
    const execution = await call('GET', `/executions/${executionIdOfDirective(directive.id)}`, keys.viewer);
    expect(execution.status).toBe(200);
    expect(execution.body.execution).toMatchObject({ handler: 'executor:noop.record', directive_id: directive.id, status: 'succeeded' });
    const signals = await waitFor(async () => {
      const page = await call('GET', `/signals?type=directive.approved&subject=${encodeURIComponent(`directive:${directive.id}`)}`, keys.viewer);
      return page.body.data.length === 1 && page.body.data;
    }, 10_000, 'the approval signal below the horizon');
    expect(signals[0]).toMatchObject({ actor: { type: 'human', id: 'operator@dir_a.test' }, source: 'api' });
  });

  it('answers a second approval 409 invalid_transition and writes nothing', async () => {
    const directive = await held();
    expect((await call('POST', `/directives/${directive.id}/approve`, keys.admin)).status).toBe(200);
    await idle(org);
    const before = await footprint(org);
    expectProblem(await call('POST', `/directives/${directive.id}/approve`, keys.operator), 409, 'invalid_transition');
    expectProblem(await call('POST', `/directives/${directive.id}/reject`, keys.operator), 409, 'invalid_transition');
    expect(await footprint(org)).toEqual(before);
  });

  it('answers 409 for an allowed directive that never waited, and 404 for unknown or malformed ids', async () => {
    const allowed = await propose({ order: 'o2' });
    expectProblem(await call('POST', `/directives/${allowed.id}/approve`, keys.operator), 409, 'invalid_transition');
    for (const id of [newId('directive'), 'not-an-id', newId('execution')]) {
      for (const action of ['approve', 'reject', 'cancel']) {
        expectProblem(await call('POST', `/directives/${id}/${action}`, keys.operator), 404, 'not_found');
      }
    }
  });

  it('rejects with a reason; a rejected directive can be neither approved nor cancelled', async () => {
    const directive = await held();
    const rejected = await call('POST', `/directives/${directive.id}/reject`, keys.operator, { reason: 'not today' });
    expect(rejected.status).toBe(200);
    expect(rejected.body.directive).toMatchObject({ status: 'rejected', decision_reason: 'not today', decided_by: { id: 'operator@dir_a.test' } });
    expectProblem(await call('POST', `/directives/${directive.id}/reject`, keys.operator), 409, 'invalid_transition');
    expectProblem(await call('POST', `/directives/${directive.id}/approve`, keys.operator), 409, 'invalid_transition');
    expectProblem(await call('POST', `/directives/${directive.id}/cancel`, keys.operator), 409, 'invalid_transition');
  });

  it('cancels with no body at all, or with a reason; cancelling twice is 409', async () => {
    const bare = await held();
    const response = await t.request('POST', path(org, `/directives/${bare.id}/cancel`), { key: keys.operator });
    expect(response.status, response.text).toBe(200);
    expect(response.body.directive).toMatchObject({ status: 'cancelled', decision_reason: null });
    expectProblem(await call('POST', `/directives/${bare.id}/cancel`, keys.operator), 409, 'invalid_transition');

    const reasoned = await held();
    const cancelled = await call('POST', `/directives/${reasoned.id}/cancel`, keys.admin, { reason: 'superseded' });
    expect(cancelled.body.directive).toMatchObject({ status: 'cancelled', decision_reason: 'superseded' });
  });

  it('answers a malformed reason 422 without deciding', async () => {
    const directive = await held();
    expectProblem(await call('POST', `/directives/${directive.id}/approve`, keys.operator, { reason: '' }), 422, 'validation_failed');
    expectProblem(await call('POST', `/directives/${directive.id}/reject`, keys.operator, { reason: 7 }), 422, 'validation_failed');
    expect(await statusOf(directive.id)).toBe('awaiting_approval');
  });

  it('refuses viewers and support (403) and other orgs (404); the directive keeps waiting', async () => {
    const directive = await held();
    for (const action of ['approve', 'reject', 'cancel']) {
      expectProblem(await call('POST', `/directives/${directive.id}/${action}`, keys.viewer), 403, 'forbidden');
      expectProblem(await call('POST', `/directives/${directive.id}/${action}`, keys.support), 403, 'forbidden');
      expectProblem(await call('POST', `/directives/${directive.id}/${action}`, keys.otherOperator), 404, 'not_found');
      expectProblem(await call('POST', `/directives/${directive.id}/${action}`, keys.otherOperator, undefined, other), 404, 'not_found');
    }
    expect(await statusOf(directive.id)).toBe('awaiting_approval');
  });
});

describe('POST /v1/orgs/{org}/directives/simulate', () => {
  it('answers what policy would decide, with guards and cost, and writes nothing', async () => {
    await idle(quiet);
    const before = await footprint(quiet);
    const simulate = (body: unknown) => call('POST', '/directives/simulate', keys.quietOperator, body, quiet);

    const hold = await simulate({ kind: 'noop.record', params: { hold: true } });
    expect(hold.status, hold.text).toBe(200);
    expect(hold.body).toEqual({
      decision: 'require_approval',
      rule: 'hold',
      reason: 'held for review',
      estimated_cost_usd: 0,
      guards: [expect.objectContaining({ guard: 'rate_limit', passed: true })],
    });
    const allow = await simulate({ kind: 'noop.record', params: { n: 1 } });
    expect(allow.body).toMatchObject({ decision: 'allow', rule: 'allow-noop' });
    const deny = await simulate({ kind: 'test.unlisted', params: { to: 'bo@example.test' } });
    expect(deny.body).toMatchObject({ decision: 'deny', rule: null, estimated_cost_usd: 0.25 });

    expect(await footprint(quiet)).toEqual(before);
  });

  it('answers an unknown kind or bad params 422', async () => {
    expectProblem(await call('POST', '/directives/simulate', keys.quietOperator, { kind: 'mail.teleport', params: {} }, quiet), 422, 'validation_failed');
    expectProblem(await call('POST', '/directives/simulate', keys.quietOperator, { kind: 'noop.record' }, quiet), 422, 'validation_failed');
  });

  it('refuses a viewer (403) and another org (404)', async () => {
    const body = { kind: 'noop.record', params: {} };
    expectProblem(await call('POST', '/directives/simulate', keys.viewer, body), 403, 'forbidden');
    expectProblem(await call('POST', '/directives/simulate', keys.otherOperator, body), 404, 'not_found');
  });
});
