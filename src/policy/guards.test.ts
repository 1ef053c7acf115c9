import { describe, expect, it } from 'vitest';
import { compilePolicy } from './compile.ts';
import { decide } from './evaluate.ts';
import type { DecisionInput, GuardUsage } from './model.ts';

function input(kind: string, params: Record<string, unknown> = {}, cost = 0): DecisionInput {
  return {
    directive: { kind, idempotency_key: 'k', causation_id: null, installation_id: null, estimated_cost_usd: cost },
    params,
    actor: { type: 'key', id: 'key_1' },
    installation: null,
    org: { id: 'org_1', slug: 'acme' },
  };
}

const NO_USAGE: GuardUsage = { rate_limits: [], budgets: [] };
const allowAll = { id: 'allow-all', match: '*', effect: 'allow' };

describe('rate limit guard', () => {
  const policy = compilePolicy({
    rules: [allowAll],
    guards: { rate_limits: [{ match: 'gmail.*', limit: 3, window_seconds: 3600 }] },
  });

  it('passes the last directive that fits the limit (count 2, limit 3)', () => {
    const decision = decide(policy, input('gmail.send'), { rate_limits: [2], budgets: [] });
    expect(decision.effect).toBe('allow');
    expect(decision.guards).toEqual([
      { guard: 'rate_limit', index: 0, match: 'gmail.*', passed: true, detail: '3 of 3 per 3600s for gmail.*' },
    ]);
  });

  it('denies the first directive over the limit (count 3, limit 3), overriding the allow', () => {
    const decision = decide(policy, input('gmail.send'), { rate_limits: [3], budgets: [] });
    expect(decision).toMatchObject({
      effect: 'deny',
      rule: 'guard:rate_limit',
      reason: 'rate limit exceeded for gmail.*: 3 already in the last 3600s, limit 3',
    });
    expect(decision.guards[0]?.passed).toBe(false);
  });

  it('a limit of 0 blocks the kind outright', () => {
    const blocked = compilePolicy({ rules: [allowAll], guards: { rate_limits: [{ match: '*', limit: 0, window_seconds: 60 }] } });
    expect(decide(blocked, input('gmail.send'), { rate_limits: [0], budgets: [] }).effect).toBe('deny');
  });

  it('fails closed when the caller supplied no count for an applicable guard', () => {
    const decision = decide(policy, input('gmail.send'), NO_USAGE);
    expect(decision).toMatchObject({ effect: 'deny', rule: 'guard:rate_limit', reason: /not provided/ });
  });

  it('ignores guards for other kinds, even with no usage for them', () => {
    expect(decide(policy, input('stripe.refund.create'), NO_USAGE)).toMatchObject({ effect: 'allow', guards: [] });
  });
});

describe('budget guard', () => {
  const policy = compilePolicy({ rules: [allowAll], guards: { budgets: [{ match: 'openai.*', monthly_usd: 20 }] } });

  it('passes a directive landing exactly on the budget', () => {
    const decision = decide(policy, input('openai.chat', {}, 0.5), { rate_limits: [], budgets: [19.5] });
    expect(decision.effect).toBe('allow');
    expect(decision.guards[0]).toEqual({
      guard: 'budget',
      index: 0,
      match: 'openai.*',
      passed: true,
      detail: '$19.50 spent + $0.50 estimated within $20.00 monthly',
    });
  });

  it('denies a directive a cent over the budget', () => {
    const decision = decide(policy, input('openai.chat', {}, 0.51), { rate_limits: [], budgets: [19.5] });
    expect(decision).toMatchObject({
      effect: 'deny',
      rule: 'guard:budget',
      reason: 'monthly budget exceeded: $19.50 spent + $0.51 estimated > $20.00',
    });
  });

  it('is not fooled by floating point (0.1 + 0.2 on a 0.3 budget)', () => {
    const tight = compilePolicy({ rules: [allowAll], guards: { budgets: [{ match: '*', monthly_usd: 0.3 }] } });
    expect(decide(tight, input('openai.chat', {}, 0.2), { rate_limits: [], budgets: [0.1] }).effect).toBe('allow');
  });

  it('shows sub-cent LLM costs without losing them', () => {
    const decision = decide(policy, input('openai.chat', {}, 0.0004), { rate_limits: [], budgets: [20] });
    expect(decision.reason).toBe('monthly budget exceeded: $20.00 spent + $0.0004 estimated > $20.00');
  });

  it('fails closed on missing usage or an invalid cost', () => {
    expect(decide(policy, input('openai.chat', {}, 1), NO_USAGE).rule).toBe('guard:budget');
    expect(decide(policy, input('openai.chat', {}, Number.NaN), { rate_limits: [], budgets: [0] }).rule).toBe('guard:budget');
    expect(decide(policy, input('openai.chat', {}, -5), { rate_limits: [], budgets: [0] }).rule).toBe('guard:budget');
  });
});

describe('list guard', () => {
  const check = (guard: Record<string, unknown>, params: Record<string, unknown>) => {
    const policy = compilePolicy({ rules: [allowAll], guards: { lists: [{ match: 'gmail.*', ...guard }] } });
    return decide(policy, input('gmail.send', params), NO_USAGE);
  };

  it.each([
    ['denied domain, mixed case', { param: 'to', deny_domains: ['Evil.COM'] }, { to: 'Bob@EVIL.com' }, false],
    ['denied domain anywhere in an array', { param: 'to', deny_domains: ['evil.com'] }, { to: ['a@ok.com', 'b@Evil.com'] }, false],
    ['subdomain is not its parent', { param: 'to', deny_domains: ['evil.com'] }, { to: 'a@mail.evil.com' }, true],
    ['display-name form still matches the domain', { param: 'to', deny_domains: ['evil.com'] }, { to: 'Bob <bob@evil.com>' }, false],
    ['denied address, mixed case', { param: 'to', deny: ['Bob@Acme.io'] }, { to: ['BOB@acme.IO'] }, false],
    ['allowed domains, mixed case', { param: 'to', allow_domains: ['ACME.io'] }, { to: ['a@acme.io', 'b@Acme.IO'] }, true],
    ['one value outside the allowed domains', { param: 'to', allow_domains: ['acme.io'] }, { to: ['a@acme.io', 'b@other.io'] }, false],
    ['allowed by address or by domain', { param: 'to', allow: ['x@partner.com'], allow_domains: ['acme.io'] }, { to: ['X@Partner.com', 'a@acme.io'] }, true],
    ['deny beats allow', { param: 'to', allow_domains: ['acme.io'], deny: ['ceo@acme.io'] }, { to: 'CEO@acme.io' }, false],
    ['missing param with an allow list', { param: 'to', allow_domains: ['acme.io'] }, {}, false],
    ['empty list with an allow list', { param: 'to', allow_domains: ['acme.io'] }, { to: [] }, false],
    ['missing param with only deny lists', { param: 'to', deny_domains: ['evil.com'] }, {}, true],
    ['nested dotted path', { param: 'recipient.email', deny_domains: ['evil.com'] }, { recipient: { email: 'x@evil.com' } }, false],
    ['non-string value fails closed', { param: 'to', deny_domains: ['evil.com'] }, { to: 42 }, false],
    ['array with a non-string fails closed', { param: 'to', deny_domains: ['evil.com'] }, { to: ['a@ok.com', { x: 1 }] }, false],
    ['value without @ under allow_domains', { param: 'to', allow_domains: ['acme.io'] }, { to: 'acme.io' }, false],
  ])('%s', (_name, guard, params, passed) => {
    const decision = check(guard, params);
    expect(decision.guards).toHaveLength(1);
    expect(decision.guards[0]?.passed).toBe(passed);
    expect(decision.effect).toBe(passed ? 'allow' : 'deny');
    if (!passed) expect(decision.rule).toBe('guard:list');
  });

  it('names the offending value', () => {
    expect(check({ param: 'to', deny_domains: ['evil.com'] }, { to: ['a@ok.com', 'b@evil.com'] }).reason).toBe(
      "param 'to': 'b@evil.com' is in a denied domain",
    );
  });
});

describe('suppression guard', () => {
  const policy = compilePolicy({
    rules: [allowAll],
    guards: { suppressions: { addresses: ['Gone@Example.com', 'Ann <ann@corp.io>'], domains: ['@blocked.net'] } },
  });
  const check = (recipients: string[] | undefined) => {
    const base = input('gmail.send');
    return decide(policy, { ...base, directive: { ...base.directive, ...(recipients ? { recipients } : {}) } }, NO_USAGE);
  };

  it.each([
    ['a suppressed address, other case', ['ok@fine.io', 'gone@EXAMPLE.com'], 'deny'],
    ['a suppressed address in display-name form', ['Someone <ann@corp.io>'], 'deny'],
    ['a suppressed domain', ['x@Blocked.NET'], 'deny'],
    ['a subdomain of a suppressed domain is not suppressed', ['x@mail.blocked.net'], 'allow'],
    ['no suppressed recipient', ['a@fine.io', 'b@corp.io'], 'allow'],
  ] as const)('%s', (_name, recipients, effect) => {
    const decision = check([...recipients]);
    expect(decision.effect).toBe(effect);
    expect(decision.guards).toEqual([expect.objectContaining({ guard: 'suppression', passed: effect === 'allow' })]);
    if (effect === 'deny') expect(decision.guards[0]!.detail).toMatch(/suppress/);
  });

  it('does not apply to a directive that names no recipients', () => {
    expect(check(undefined)).toMatchObject({ effect: 'allow', guards: [] });
    expect(check([])).toMatchObject({ effect: 'allow', guards: [] });
  });
});

describe('guards together', () => {
  const guards = {
    rate_limits: [{ match: '*', limit: 5, window_seconds: 60 }],
    budgets: [{ match: '*', monthly_usd: 10 }],
    lists: [{ match: '*', param: 'to', deny_domains: ['evil.com'] }],
  };

  it('are all evaluated and reported even when a rule already denies', () => {
    const policy = compilePolicy({ rules: [{ id: 'stop', match: '*', effect: 'deny' }], guards });
    const decision = decide(policy, input('gmail.send', { to: 'a@ok.com' }, 1), { rate_limits: [0], budgets: [0] });
    expect(decision).toMatchObject({ effect: 'deny', rule: 'stop' });
    expect(decision.guards.map((guard) => [guard.guard, guard.passed])).toEqual([
      ['rate_limit', true],
      ['budget', true],
      ['list', true],
    ]);
  });

  it('the first failure in report order names the decision; later guards are still reported', () => {
    const policy = compilePolicy({ rules: [allowAll], guards });
    const decision = decide(policy, input('gmail.send', { to: 'a@evil.com' }, 20), { rate_limits: [0], budgets: [0] });
    expect(decision.rule).toBe('guard:budget');
    expect(decision.guards.map((guard) => guard.passed)).toEqual([true, false, false]);
  });

  it('a failed guard overrides require_approval and drops its ttl', () => {
    const policy = compilePolicy({
      rules: [{ id: 'ask', match: '*', effect: 'require_approval', approval_ttl_seconds: 600 }],
      guards,
    });
    const decision = decide(policy, input('gmail.send', { to: 'a@evil.com' }), { rate_limits: [0], budgets: [0] });
    expect(decision).toMatchObject({ effect: 'deny', rule: 'guard:list' });
    expect(decision.approval_ttl_seconds).toBeUndefined();
  });
});
