/**
 * Policy against a real database: the decision every proposal gets (rules,
 * globs, CEL, fail-closed), guards that count usage exactly under
 * concurrency (rate limits, budgets), recipient lists, simulation that
 * writes nothing, and a bad policy refused whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { Actor } from '../../src/signals/actor.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { DomainError } from '../../src/core/errors.ts';
import { proposeDirective, simulateDirective } from '../../src/directives/propose.ts';
import type { Executor } from '../../src/executors/registry.ts';
import { NO_RULE_REASON } from '../../src/policy/evaluate.ts';
import { getPolicy, updatePolicy } from '../../src/directives/policy-store.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

/** `llm.complete`: costs what its params say, for the budget guard. */
const llmExecutor: Executor<{ cost_usd: number }> = {
  kinds: ['llm.complete'],
  params: z.object({ cost_usd: z.number().min(0) }),
  estimateCostUsd: (_kind, params) => params.cost_usd,
  honorsIdempotencyKey: true,
  async execute() {
    return { outcome: 'succeeded', result: {} };
  },
};

/** `mail.send`: a recipient param for the list guards, and recipients for the suppression list. */
const mailExecutor: Executor<{ to: string | string[] }> = {
  kinds: ['mail.send'],
  params: z.object({ to: z.union([z.string(), z.array(z.string())]) }),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  recipients: (_kind, params) => (typeof params.to === 'string' ? [params.to] : params.to),
  async execute() {
    return { outcome: 'succeeded', result: {} };
  },
};

const HUMAN: Actor = { type: 'human', id: 'ana@policy.test' };
const AGENT: Actor = { type: 'agent', id: 'triage-bot' };

let t: TestApp;
let org: Tenant;
let orgCounter = 0;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_DB_POOL_SIZE: '25' }, executors: [llmExecutor, mailExecutor] });
  org = await t.createOrg('policy');
});
afterAll(() => t.close());

const freshOrg = () => t.createOrg(`policy_${++orgCounter}`);

function setPolicy(tenant: Tenant, document: unknown) {
  return updatePolicy(t.app.deps.bus.emit, { ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system' }, input: document });
}

let keyCounter = 0;
function propose(tenant: Tenant, input: { kind: string; params: Record<string, unknown>; idempotency_key?: string }, actor: Actor = HUMAN) {
  return proposeDirective(t.app.deps.bus.directives, {
    ctx: { tenant, actor, source: 'api' },
    input: { idempotency_key: `policy-test-${++keyCounter}`, ...input },
  });
}

function simulate(tenant: Tenant, input: { kind: string; params: Record<string, unknown> }, actor: Actor = HUMAN) {
  return simulateDirective(t.app.deps.bus.directives, { ctx: { tenant, actor, source: 'api' }, input });
}

async function counts(tenant: Tenant) {
  const [row] = await t.app.deps.sql<{ signals: number; directives: number }[]>`
    select (select count(*)::int from ${t.app.deps.sql(`${tenant.schema}.signals`)}) as signals,
           (select count(*)::int from ${t.app.deps.sql(`${tenant.schema}.directives`)}) as directives`;
  return row!;
}

const allowAll = { id: 'allow-all', match: '*', effect: 'allow' };

interface Row {
  name: string;
  rules: unknown[];
  kind?: string;
  params?: Record<string, unknown>;
  actor?: Actor;
  status: 'approved' | 'awaiting_approval' | 'rejected';
  rule: string | null;
  reason: string | RegExp;
}

const ROWS: Row[] = [
  {
    name: 'an empty rule list denies everything (fail-closed)',
    rules: [],
    status: 'rejected', rule: null, reason: NO_RULE_REASON,
  },
  {
    name: 'an allow rule on the kind family approves',
    rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }],
    status: 'approved', rule: 'allow-noop', reason: 'rule allow-noop allows noop.record',
  },
  {
    name: "'*' matches every kind",
    rules: [allowAll],
    kind: 'mail.send', params: { to: 'a@example.com' },
    status: 'approved', rule: 'allow-all', reason: 'rule allow-all allows mail.send',
  },
  {
    name: 'a glob of another family does not match, so nothing allows',
    rules: [{ id: 'allow-mail', match: 'mail.*', effect: 'allow' }],
    status: 'rejected', rule: null, reason: NO_RULE_REASON,
  },
  {
    name: "'noop.*' does not match a kind that merely starts with 'noop'",
    rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }, { id: 'deny-noo', match: 'noo.*', effect: 'deny' }],
    status: 'approved', rule: 'allow-noop', reason: 'rule allow-noop allows noop.record',
  },
  {
    name: 'an exact kind does not match its family',
    rules: [{ id: 'allow-mail-exact', match: 'mail.send', effect: 'allow' }],
    kind: 'llm.complete', params: { cost_usd: 0 },
    status: 'rejected', rule: null, reason: NO_RULE_REASON,
  },
  {
    name: 'deny beats allow whatever the order',
    rules: [allowAll, { id: 'deny-noop', match: 'noop.record', effect: 'deny', reason: 'noop is frozen' }],
    status: 'rejected', rule: 'deny-noop', reason: 'noop is frozen',
  },
  {
    name: 'require_approval beats allow',
    rules: [{ id: 'review', match: 'noop.*', effect: 'require_approval' }, allowAll],
    status: 'awaiting_approval', rule: 'review', reason: 'rule review requires approval for noop.record',
  },
  {
    name: 'deny beats require_approval',
    rules: [{ id: 'review', match: '*', effect: 'require_approval' }, { id: 'deny-all', match: '*', effect: 'deny' }],
    status: 'rejected', rule: 'deny-all', reason: 'rule deny-all denies noop.record',
  },
  {
    name: 'of two rules with the winning effect, the first names the decision',
    rules: [allowAll, { id: 'deny-a', match: 'noop.*', effect: 'deny' }, { id: 'deny-b', match: '*', effect: 'deny' }],
    status: 'rejected', rule: 'deny-a', reason: 'rule deny-a denies noop.record',
  },
  {
    name: 'CEL over params: a condition that holds applies',
    rules: [allowAll, { id: 'big-amounts', match: '*', when: 'params.amount > 100', effect: 'deny', reason: 'too big' }],
    params: { amount: 150 },
    status: 'rejected', rule: 'big-amounts', reason: 'too big',
  },
  {
    name: 'CEL over params: a condition that does not hold is skipped',
    rules: [allowAll, { id: 'big-amounts', match: '*', when: 'params.amount > 100', effect: 'deny', reason: 'too big' }],
    params: { amount: 99.5 },
    status: 'approved', rule: 'allow-all', reason: 'rule allow-all allows noop.record',
  },
  {
    name: 'CEL over the actor: agents need approval',
    rules: [allowAll, { id: 'agents-ask', match: '*', when: "actor.type == 'agent'", effect: 'require_approval' }],
    actor: AGENT,
    status: 'awaiting_approval', rule: 'agents-ask', reason: 'rule agents-ask requires approval for noop.record',
  },
  {
    name: 'CEL over the actor: humans do not',
    rules: [allowAll, { id: 'agents-ask', match: '*', when: "actor.type == 'agent'", effect: 'require_approval' }],
    actor: HUMAN,
    status: 'approved', rule: 'allow-all', reason: 'rule allow-all allows noop.record',
  },
  {
    name: 'CEL over the org: an allow for this org applies',
    rules: [{ id: 'this-org', match: '*', when: "org.slug == 'policy'", effect: 'allow' }],
    status: 'approved', rule: 'this-org', reason: 'rule this-org allows noop.record',
  },
  {
    name: 'CEL over the org: an allow for another org does not',
    rules: [{ id: 'other-org', match: '*', when: "org.slug == 'someone_else'", effect: 'allow' }],
    status: 'rejected', rule: null, reason: NO_RULE_REASON,
  },
  {
    name: 'an allow whose condition cannot be evaluated grants nothing',
    rules: [{ id: 'flag', match: '*', when: 'params.flags.enabled == true', effect: 'allow' }],
    params: {},
    status: 'rejected', rule: null, reason: /^no rule allows this directive \(fail-closed\); condition failed to evaluate for rule flag: /,
  },
  {
    name: 'a deny whose condition cannot be evaluated still denies',
    rules: [allowAll, { id: 'vip-only', match: '*', when: "params.customer.tier != 'vip'", effect: 'deny' }],
    params: {},
    status: 'rejected', rule: 'vip-only', reason: /^rule vip-only denies noop\.record \(condition failed to evaluate: .*; matched fail-closed\)$/,
  },
];

describe('rules × directives', () => {
  it('with no policy at all, everything is rejected by no rule', async () => {
    const bare = await freshOrg();
    const { directive, created } = await propose(bare, { kind: 'noop.record', params: {} });
    expect(created).toBe(true);
    expect(directive.status).toBe('rejected');
    expect(directive.decision).toMatchObject({ effect: 'deny', rule: null, reason: NO_RULE_REASON });
    expect((await getPolicy(t.app.deps.sql, bare)).version).toBe(0);
  });

  it.each(ROWS)('$name', async (row) => {
    await setPolicy(org, { rules: row.rules });
    const { directive } = await propose(org, { kind: row.kind ?? 'noop.record', params: row.params ?? {} }, row.actor ?? HUMAN);
    expect(directive.status).toBe(row.status);
    expect(directive.decision.rule).toBe(row.rule);
    if (typeof row.reason === 'string') expect(directive.decision.reason).toBe(row.reason);
    else expect(directive.decision.reason).toMatch(row.reason);
    // The stored row is the fold of what was proposed: read it back.
    const [stored] = await t.app.deps.sql<{ status: string; decision: { rule: string | null } }[]>`
      select status, decision from org_policy.directives where id = ${directive.id}`;
    expect(stored).toMatchObject({ status: row.status, decision: { rule: row.rule } });
  });

  it('an approval rule may name its TTL; expiry is recorded from it', async () => {
    await setPolicy(org, { rules: [{ id: 'review', match: '*', effect: 'require_approval', approval_ttl_seconds: 600 }] });
    const { directive } = await propose(org, { kind: 'noop.record', params: {} });
    expect(directive.status).toBe('awaiting_approval');
    expect(directive.decision.approval_ttl_seconds).toBe(600);
    const waited = new Date(directive.expires_at!).getTime() - new Date(directive.proposed_at).getTime();
    expect(waited).toBeGreaterThan(590_000);
    expect(waited).toBeLessThan(610_000);
  });
});

/** Proposes `n` directives at once; distinct keys, so only the guards serialize them. */
async function burst(tenant: Tenant, n: number, input: (i: number) => { kind: string; params: Record<string, unknown> }) {
  const round = ++keyCounter;
  return Promise.all(
    Array.from({ length: n }, (_, i) => propose(tenant, { ...input(i), idempotency_key: `burst-${round}-${i}` })),
  );
}

describe('rate limit', () => {
  it.each([7, 1, 13])('admits exactly %i of 20 concurrent proposals', async (limit) => {
    const tenant = await freshOrg();
    await setPolicy(tenant, {
      rules: [{ id: 'allow-noop', match: 'noop.*', effect: 'allow' }],
      guards: { rate_limits: [{ match: 'noop.record', limit, window_seconds: 3600 }] },
    });
    const results = await burst(tenant, 20, (i) => ({ kind: 'noop.record', params: { i } }));
    const approved = results.filter(({ directive }) => directive.status === 'approved');
    const rejected = results.filter(({ directive }) => directive.status === 'rejected');
    expect(approved).toHaveLength(limit);
    expect(rejected).toHaveLength(20 - limit);
    for (const { directive } of rejected) {
      expect(directive.decision.rule).toBe('guard:rate_limit');
      expect(directive.decision.reason).toBe(`rate limit exceeded for noop.record: ${limit} already in the last 3600s, limit ${limit}`);
    }
    // Each admitted one saw the ones before it: counts 1..limit, each once.
    const admittedAs = approved.map(({ directive }) => directive.decision.guards[0]!.detail).sort();
    expect(admittedAs).toEqual(Array.from({ length: limit }, (_, i) => `${i + 1} of ${limit} per 3600s for noop.record`).sort());
    const [row] = await t.app.deps.sql<{ approved: number }[]>`
      select count(*)::int as approved from ${t.app.deps.sql(`${tenant.schema}.directives`)} where status = 'approved'`;
    expect(row!.approved).toBe(limit);
  });

  it('counts only kinds the guard matches, and denied proposals use none of the allowance', async () => {
    const tenant = await freshOrg();
    await setPolicy(tenant, {
      rules: [allowAll, { id: 'deny-flagged', match: '*', when: 'has(params.flagged) && params.flagged == true', effect: 'deny' }],
      guards: { rate_limits: [{ match: 'noop.record', limit: 2, window_seconds: 60 }] },
    });
    for (let i = 0; i < 3; i++) expect((await propose(tenant, { kind: 'noop.record', params: { flagged: true } })).directive.status).toBe('rejected');
    expect((await propose(tenant, { kind: 'mail.send', params: { to: 'a@example.com' } })).directive.status).toBe('approved');
    expect((await propose(tenant, { kind: 'noop.record', params: {} })).directive.status).toBe('approved');
    expect((await propose(tenant, { kind: 'noop.record', params: {} })).directive.status).toBe('approved');
    const third = await propose(tenant, { kind: 'noop.record', params: {} });
    expect(third.directive.status).toBe('rejected');
    expect(third.directive.decision.rule).toBe('guard:rate_limit');
  });
});

describe('budget', () => {
  const budgetPolicy = (monthly_usd: number) => ({
    rules: [{ id: 'allow-llm', match: 'llm.*', effect: 'allow' }],
    guards: { budgets: [{ match: 'llm.*', monthly_usd }] },
  });

  it('admits proposals until the next would exceed the month, landing exactly on the budget', async () => {
    const tenant = await freshOrg();
    await setPolicy(tenant, budgetPolicy(1));
    const outcome = async (cost_usd: number) => (await propose(tenant, { kind: 'llm.complete', params: { cost_usd } })).directive;
    for (let i = 0; i < 3; i++) expect((await outcome(0.3)).status).toBe('approved');
    const over = await outcome(0.3);
    expect(over.status).toBe('rejected');
    expect(over.decision.rule).toBe('guard:budget');
    expect(over.decision.reason).toBe('monthly budget exceeded: $0.90 spent + $0.30 estimated > $1.00');
    expect(over.estimated_cost_usd).toBe(0.3);
    // 0.9 + 0.1 is exactly the budget, not a float above it.
    expect((await outcome(0.1)).status).toBe('approved');
    const after = await outcome(0.01);
    expect(after.status).toBe('rejected');
    expect(after.decision.rule).toBe('guard:budget');
    // A free call still fits a spent budget.
    expect((await outcome(0)).status).toBe('approved');
  });

  it.each([
    { cost: 0.15, admitted: 6 },
    { cost: 0.1, admitted: 10 },
    { cost: 0.35, admitted: 2 },
  ])('20 concurrent proposals costing $cost each never overspend: exactly $admitted admitted', async ({ cost, admitted }) => {
    const tenant = await freshOrg();
    await setPolicy(tenant, budgetPolicy(1));
    const results = await burst(tenant, 20, () => ({ kind: 'llm.complete', params: { cost_usd: cost } }));
    const approved = results.filter(({ directive }) => directive.status === 'approved');
    expect(approved).toHaveLength(admitted);
    for (const { directive } of results.filter(({ directive }) => directive.status !== 'approved')) {
      expect(directive.status).toBe('rejected');
      expect(directive.decision.rule).toBe('guard:budget');
    }
    const [row] = await t.app.deps.sql<{ committed: number }[]>`
      select coalesce(sum(estimated_cost_usd), 0)::float8 as committed
        from ${t.app.deps.sql(`${tenant.schema}.directives`)} where status = 'approved'`;
    expect(row!.committed).toBeLessThanOrEqual(1 + 1e-9);
    expect(row!.committed).toBeCloseTo(cost * admitted, 9);
  });

  it('does not cover kinds outside its match', async () => {
    const tenant = await freshOrg();
    await setPolicy(tenant, { rules: [allowAll], guards: { budgets: [{ match: 'llm.*', monthly_usd: 0 }] } });
    expect((await propose(tenant, { kind: 'llm.complete', params: { cost_usd: 0.01 } })).directive.decision.rule).toBe('guard:budget');
    expect((await propose(tenant, { kind: 'noop.record', params: {} })).directive.status).toBe('approved');
  });
});

describe('recipient lists', () => {
  let tenant: Tenant;
  beforeAll(async () => {
    tenant = await freshOrg();
    await setPolicy(tenant, {
      rules: [{ id: 'allow-mail', match: 'mail.*', effect: 'allow' }],
      guards: {
        lists: [
          { match: 'mail.send', param: 'to', allow_domains: ['example.com', '@partner.org'], deny: ['blocked@example.com'] },
          { match: 'mail.*', param: 'to', deny_domains: ['competitor.io'] },
        ],
      },
    });
  });

  it.each([
    { to: 'ana@example.com', status: 'approved', detail: null },
    { to: 'ANA@Example.COM', status: 'approved', detail: null },
    { to: 'Bo <bo@partner.org>', status: 'approved', detail: null },
    { to: ['ana@example.com', 'bo@partner.org'], status: 'approved', detail: null },
    { to: 'mallory@evil.com', status: 'rejected', detail: "param 'to': 'mallory@evil.com' is not on the allow list" },
    { to: 'ana@sub.example.com', status: 'rejected', detail: "param 'to': 'ana@sub.example.com' is not on the allow list" },
    { to: 'Blocked@Example.com', status: 'rejected', detail: "param 'to': 'Blocked@Example.com' is on the deny list" },
    { to: ['ana@example.com', 'eve@evil.com'], status: 'rejected', detail: "param 'to': 'eve@evil.com' is not on the allow list" },
    { to: [], status: 'rejected', detail: "param 'to' is missing but an allow list requires it" },
  ])('to=$to → $status', async ({ to, status, detail }) => {
    const { directive } = await propose(tenant, { kind: 'mail.send', params: { to } });
    expect(directive.status).toBe(status);
    if (detail === null) {
      expect(directive.decision.rule).toBe('allow-mail');
      expect(directive.decision.guards.map((guard) => guard.passed)).toEqual([true, true]);
    } else {
      expect(directive.decision.rule).toBe('guard:list');
      expect(directive.decision.reason).toBe(detail);
    }
  });

  it('a denied domain is refused by the second list even when the first would allow it', async () => {
    const other = await freshOrg();
    await setPolicy(other, {
      rules: [allowAll],
      guards: { lists: [{ match: 'mail.*', param: 'to', deny_domains: ['competitor.io'] }] },
    });
    expect((await propose(other, { kind: 'mail.send', params: { to: 'x@anywhere.net' } })).directive.status).toBe('approved');
    const denied = (await propose(other, { kind: 'mail.send', params: { to: 'ceo@Competitor.IO' } })).directive;
    expect(denied.status).toBe('rejected');
    expect(denied.decision).toMatchObject({ rule: 'guard:list', reason: "param 'to': 'ceo@Competitor.IO' is in a denied domain" });
  });
});

describe('the suppression list', () => {
  it('refuses a directive reaching a suppressed address or domain, whatever the rules allow', async () => {
    const tenant = await freshOrg();
    await setPolicy(tenant, {
      rules: [allowAll],
      guards: { suppressions: { addresses: ['unsubscribed@example.com'], domains: ['bounced.io'] } },
    });
    const fine = (await propose(tenant, { kind: 'mail.send', params: { to: ['ana@example.com'] } })).directive;
    expect(fine.status).toBe('approved');
    const suppressed = (await propose(tenant, { kind: 'mail.send', params: { to: ['ana@example.com', 'Unsubscribed@Example.com'] } })).directive;
    expect(suppressed.status).toBe('rejected');
    expect(suppressed.decision).toMatchObject({ rule: 'guard:suppression', reason: "recipient 'unsubscribed@example.com' is on the suppression list" });
    const domain = (await propose(tenant, { kind: 'mail.send', params: { to: 'Bo <bo@BOUNCED.io>' } })).directive;
    expect(domain.decision).toMatchObject({ effect: 'deny', rule: 'guard:suppression', reason: "recipient 'bo@bounced.io' is in a suppressed domain" });
    // Kinds whose executors name no recipients are not checked.
    expect((await propose(tenant, { kind: 'llm.complete', params: { cost_usd: 0 } })).directive.status).toBe('approved');
  });
});

describe('simulate', () => {
  it('writes nothing and answers what a proposal then gets', async () => {
    const tenant = await freshOrg();
    await setPolicy(tenant, {
      rules: [
        { id: 'allow-all', match: '*', effect: 'allow' },
        { id: 'agents-ask', match: '*', when: "actor.type == 'agent'", effect: 'require_approval' },
        { id: 'no-big', match: 'llm.*', when: 'params.cost_usd > 0.5', effect: 'deny' },
      ],
      guards: {
        rate_limits: [{ match: 'noop.record', limit: 1, window_seconds: 3600 }],
        budgets: [{ match: 'llm.*', monthly_usd: 1 }],
        lists: [{ match: 'mail.send', param: 'to', deny_domains: ['evil.com'] }],
      },
    });
    const cases: Array<{ input: { kind: string; params: Record<string, unknown> }; actor?: Actor; decision: string; rule: string | null }> = [
      { input: { kind: 'noop.record', params: {} }, decision: 'allow', rule: 'allow-all' },
      // The first proposal used the allowance; the simulation now says so.
      { input: { kind: 'noop.record', params: {} }, decision: 'deny', rule: 'guard:rate_limit' },
      { input: { kind: 'mail.send', params: { to: 'a@example.com' } }, actor: AGENT, decision: 'require_approval', rule: 'agents-ask' },
      { input: { kind: 'mail.send', params: { to: 'a@evil.com' } }, decision: 'deny', rule: 'guard:list' },
      { input: { kind: 'llm.complete', params: { cost_usd: 0.6 } }, decision: 'deny', rule: 'no-big' },
      { input: { kind: 'llm.complete', params: { cost_usd: 0.5 } }, decision: 'allow', rule: 'allow-all' },
      { input: { kind: 'llm.complete', params: { cost_usd: 0.5 } }, decision: 'allow', rule: 'allow-all' },
      { input: { kind: 'llm.complete', params: { cost_usd: 0.5 } }, decision: 'deny', rule: 'guard:budget' },
    ];
    for (const { input, actor, decision, rule } of cases) {
      const before = await counts(tenant);
      // Simulating repeatedly consumes no allowance and no budget.
      const first = await simulate(tenant, input, actor);
      const second = await simulate(tenant, input, actor);
      expect(await counts(tenant)).toEqual(before);
      expect(second).toEqual(first);
      expect(first).toMatchObject({ decision, rule });
      expect(first.estimated_cost_usd).toBe(input.kind === 'llm.complete' ? input.params.cost_usd : 0);

      const { directive } = await propose(tenant, input, actor);
      expect(directive.decision.effect).toBe(first.decision);
      expect(directive.decision.rule).toBe(first.rule);
      expect(directive.decision.reason).toBe(first.reason);
      expect(directive.decision.guards).toEqual(first.guards);
      expect(directive.estimated_cost_usd).toBe(first.estimated_cost_usd);
    }
  });

  it('with no policy, simulates the fail-closed denial', async () => {
    const bare = await freshOrg();
    const before = await counts(bare);
    expect(await simulate(bare, { kind: 'noop.record', params: {} })).toEqual({
      decision: 'deny', rule: null, reason: NO_RULE_REASON, guards: [], estimated_cost_usd: 0,
    });
    expect(await counts(bare)).toEqual(before);
  });
});

describe('a bad policy', () => {
  it('is refused whole with the CEL error at rules.N.when and its position; nothing is written', async () => {
    const tenant = await freshOrg();
    const good = await setPolicy(tenant, { rules: [allowAll] });
    const before = await counts(tenant);
    const error = await setPolicy(tenant, {
      rules: [allowAll, { id: 'broken', match: '*', when: 'params.amount >', effect: 'deny' }, { id: 'typo', match: '*', when: 'parms.amount > 1', effect: 'deny' }],
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(DomainError);
    const domainError = error as DomainError;
    expect(domainError.code).toBe('validation_failed');
    expect(domainError.status).toBe(422);
    expect(domainError.errors?.map((field) => field.path)).toEqual(['rules.1.when', 'rules.2.when']);
    for (const field of domainError.errors!) expect(field.message).toMatch(/at line \d+, column \d+ \(offset \d+\)$/);
    // The undeclared variable is named at its start: column 1.
    expect(domainError.errors![1]!.message).toMatch(/at line 1, column 1 \(offset 0\)$/);

    expect(await counts(tenant)).toEqual(before);
    const after = await getPolicy(t.app.deps.sql, tenant);
    expect(after.version).toBe(good.version);
    expect(after.rules).toEqual([allowAll]);
    expect((await propose(tenant, { kind: 'noop.record', params: {} })).directive.status).toBe('approved');
  });

  it('refuses a malformed rule and a duplicate id at their paths', async () => {
    const tenant = await freshOrg();
    const refusal = (document: unknown) =>
      setPolicy(tenant, document).then(
        () => { throw new Error('the policy was accepted'); },
        (caught: unknown) => caught as DomainError,
      );
    const shape = await refusal({ rules: [allowAll, { id: 'other', match: 'Mail.*', effect: 'permit' }] });
    expect(shape).toBeInstanceOf(DomainError);
    expect(shape.code).toBe('validation_failed');
    expect(shape.errors?.map((field) => field.path).sort()).toEqual(['rules.1.effect', 'rules.1.match']);
    const duplicate = await refusal({ rules: [allowAll, { ...allowAll, effect: 'deny' }] });
    expect(duplicate).toBeInstanceOf(DomainError);
    expect(duplicate.errors).toEqual([{ path: 'rules.1.id', message: "duplicate rule id 'allow-all'" }]);
    expect((await getPolicy(t.app.deps.sql, tenant)).version).toBe(0);
    expect(await counts(tenant)).toEqual({ signals: 1, directives: 0 });
  });
});
