import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CelBudgetExceeded, celBudget } from './cel-program.ts';
import { compilePolicy, EMPTY_POLICY } from './compile.ts';
import { applicableGuards, decide, matchesKind, NO_RULE_REASON } from './evaluate.ts';
import type { DecisionInput, Effect, GuardUsage } from './model.ts';

interface DirectiveSpec {
  kind: string;
  params?: Record<string, unknown>;
  actor?: DecisionInput['actor'];
  installation?: Record<string, unknown> | null;
  org?: DecisionInput['org'];
  cost?: number;
}

function input(spec: DirectiveSpec): DecisionInput {
  return {
    directive: {
      kind: spec.kind,
      idempotency_key: 'idem-1',
      causation_id: null,
      installation_id: spec.installation ? 'ins_1' : null,
      estimated_cost_usd: spec.cost ?? 0,
    },
    params: spec.params ?? {},
    actor: spec.actor ?? { type: 'key', id: 'key_1' },
    installation: spec.installation ?? null,
    org: spec.org ?? { id: 'org_1', slug: 'acme' },
  };
}

const NO_USAGE: GuardUsage = { rate_limits: [], budgets: [] };

const allowAll = { id: 'allow-all', match: '*', effect: 'allow' };

describe('matchesKind', () => {
  it.each([
    ['*', 'gmail.send', true],
    ['*', 'a', true],
    ['gmail.*', 'gmail.send', true],
    ['gmail.*', 'gmail.drafts.create', true],
    ['gmail.*', 'gmail', false],
    ['gmail.*', 'gmailx.send', false],
    ['gmail.*', 'gmail.', false],
    ['stripe.refund.create', 'stripe.refund.create', true],
    ['stripe.refund.create', 'stripe.refund', false],
    ['stripe.refund', 'stripe.refund.create', false],
  ])('%s vs %s → %s', (glob, kind, expected) => {
    expect(matchesKind(glob, kind)).toBe(expected);
  });
});

interface Row {
  name: string;
  rules: unknown[];
  guards?: unknown;
  directive: DirectiveSpec;
  usage?: GuardUsage;
  effect: Effect;
  rule: string | null;
  reason?: string | RegExp;
  ttl?: number;
}

const rows: Row[] = [
  // Fail-closed default.
  { name: 'no rules', rules: [], directive: { kind: 'gmail.send' }, effect: 'deny', rule: null, reason: NO_RULE_REASON },
  {
    name: 'only rules for other kinds',
    rules: [
      { id: 'stripe', match: 'stripe.*', effect: 'allow' },
      { id: 'exact', match: 'gmail.send.later', effect: 'allow' },
    ],
    directive: { kind: 'gmail.send' },
    effect: 'deny',
    rule: null,
    reason: NO_RULE_REASON,
  },
  {
    name: 'only rules whose condition is false',
    rules: [{ id: 'small', match: '*', when: 'params.amount < 10', effect: 'allow' }],
    directive: { kind: 'stripe.refund.create', params: { amount: 10 } },
    effect: 'deny',
    rule: null,
    reason: NO_RULE_REASON,
  },
  // Globs.
  { name: "'*' allows anything", rules: [allowAll], directive: { kind: 'webhook.post' }, effect: 'allow', rule: 'allow-all' },
  {
    name: 'prefix glob covers deeper kinds',
    rules: [{ id: 'gmail', match: 'gmail.*', effect: 'allow' }],
    directive: { kind: 'gmail.drafts.create' },
    effect: 'allow',
    rule: 'gmail',
  },
  {
    name: 'prefix glob is segment-aligned',
    rules: [{ id: 'gmail', match: 'gmail.*', effect: 'allow' }],
    directive: { kind: 'gmailx.send' },
    effect: 'deny',
    rule: null,
  },
  {
    name: 'exact kind does not cover its prefix',
    rules: [{ id: 'refund', match: 'stripe.refund.create', effect: 'allow' }],
    directive: { kind: 'stripe.refund' },
    effect: 'deny',
    rule: null,
  },
  // CEL over params: JSON integers are ints, other numbers doubles.
  {
    name: 'int param above threshold requires approval',
    rules: [allowAll, { id: 'big', match: 'stripe.*', when: 'params.amount > 5000', effect: 'require_approval', approval_ttl_seconds: 3600 }],
    directive: { kind: 'stripe.refund.create', params: { amount: 6000 } },
    effect: 'require_approval',
    rule: 'big',
    ttl: 3600,
  },
  {
    name: 'int param at threshold is allowed',
    rules: [allowAll, { id: 'big', match: 'stripe.*', when: 'params.amount > 5000', effect: 'require_approval' }],
    directive: { kind: 'stripe.refund.create', params: { amount: 5000 } },
    effect: 'allow',
    rule: 'allow-all',
  },
  {
    name: 'double param against double literal',
    rules: [allowAll, { id: 'pricey', match: '*', when: 'params.price > 50.5', effect: 'deny' }],
    directive: { kind: 'shop.buy', params: { price: 50.75 } },
    effect: 'deny',
    rule: 'pricey',
  },
  {
    name: 'int param against double literal',
    rules: [allowAll, { id: 'pricey', match: '*', when: 'params.price > 50.5', effect: 'deny' }],
    directive: { kind: 'shop.buy', params: { price: 50 } },
    effect: 'allow',
    rule: 'allow-all',
  },
  {
    name: 'int arithmetic on a JSON integer',
    rules: [{ id: 'sum', match: '*', when: 'params.amount + 1 == 6001 && params.amount * 2 == 12000', effect: 'allow' }],
    directive: { kind: 'shop.buy', params: { amount: 6000 } },
    effect: 'allow',
    rule: 'sum',
  },
  {
    name: 'nested params, lists and string functions',
    rules: [
      {
        id: 'internal',
        match: 'gmail.send',
        when: 'params.to.all(t, t.endsWith("@acme.io")) && params.meta.priority == "low"',
        effect: 'allow',
      },
    ],
    directive: { kind: 'gmail.send', params: { to: ['a@acme.io', 'b@acme.io'], meta: { priority: 'low' } } },
    effect: 'allow',
    rule: 'internal',
  },
  {
    name: 'has() guards an optional param',
    rules: [{ id: 'no-cc', match: '*', when: '!has(params.cc)', effect: 'allow' }],
    directive: { kind: 'gmail.send', params: { to: 'a@acme.io' } },
    effect: 'allow',
    rule: 'no-cc',
  },
  // CEL over actor, org, installation, directive.
  {
    name: 'agents are denied regardless of the allow',
    rules: [allowAll, { id: 'no-agents', match: '*', when: 'actor.type == "agent"', effect: 'deny', reason: 'agents may not act' }],
    directive: { kind: 'gmail.send', actor: { type: 'agent', id: 'agt_1' } },
    effect: 'deny',
    rule: 'no-agents',
    reason: 'agents may not act',
  },
  {
    name: 'org slug condition',
    rules: [{ id: 'acme-only', match: '*', when: 'org.slug == "acme" && org.id.startsWith("org_")', effect: 'allow' }],
    directive: { kind: 'gmail.send' },
    effect: 'allow',
    rule: 'acme-only',
  },
  {
    name: 'installation condition when installed',
    rules: [{ id: 'live', match: '*', when: 'installation != null && installation.config.mode == "live"', effect: 'allow' }],
    directive: { kind: 'gmail.send', installation: { id: 'ins_1', config: { mode: 'live' } } },
    effect: 'allow',
    rule: 'live',
  },
  {
    name: 'installation condition without an installation',
    rules: [{ id: 'live', match: '*', when: 'installation != null && installation.config.mode == "live"', effect: 'allow' }],
    directive: { kind: 'gmail.send' },
    effect: 'deny',
    rule: null,
    reason: NO_RULE_REASON,
  },
  {
    name: 'directive fields',
    rules: [{ id: 'root', match: '*', when: 'directive.causation_id == null && directive.kind == "gmail.send"', effect: 'allow' }],
    directive: { kind: 'gmail.send' },
    effect: 'allow',
    rule: 'root',
  },
  // CEL over usage.
  {
    name: 'rate usage near the limit asks for approval',
    rules: [
      allowAll,
      { id: 'busy', match: 'gmail.*', when: 'usage.rate_limits.exists(r, r.count + 1 >= r.limit)', effect: 'require_approval' },
    ],
    guards: { rate_limits: [{ match: 'gmail.*', limit: 10, window_seconds: 3600 }] },
    directive: { kind: 'gmail.send' },
    usage: { rate_limits: [9], budgets: [] },
    effect: 'require_approval',
    rule: 'busy',
  },
  {
    name: 'budget usage in a condition mixes whole and fractional dollars',
    rules: [
      allowAll,
      {
        id: 'spendy',
        match: 'openai.*',
        when: 'usage.budgets[0].spent_usd + directive.estimated_cost_usd > usage.budgets[0].monthly_usd * 0.8',
        effect: 'require_approval',
      },
    ],
    guards: { budgets: [{ match: 'openai.*', monthly_usd: 100 }] },
    directive: { kind: 'openai.chat', cost: 1 },
    usage: { rate_limits: [], budgets: [80] },
    effect: 'require_approval',
    rule: 'spendy',
  },
  {
    name: 'usage lists only guards that cover the kind',
    rules: [{ id: 'one', match: '*', when: 'size(usage.rate_limits) == 1 && usage.rate_limits[0].match == "gmail.*"', effect: 'allow' }],
    guards: {
      rate_limits: [
        { match: 'stripe.*', limit: 5, window_seconds: 60 },
        { match: 'gmail.*', limit: 5, window_seconds: 60 },
      ],
    },
    directive: { kind: 'gmail.send' },
    usage: { rate_limits: [0, 0], budgets: [] },
    effect: 'allow',
    rule: 'one',
  },
  // Combination: deny > require_approval > allow, whatever the order.
  {
    name: 'deny wins when listed last',
    rules: [allowAll, { id: 'ask', match: '*', effect: 'require_approval' }, { id: 'stop', match: '*', effect: 'deny' }],
    directive: { kind: 'gmail.send' },
    effect: 'deny',
    rule: 'stop',
  },
  {
    name: 'deny wins when listed first',
    rules: [{ id: 'stop', match: '*', effect: 'deny' }, { id: 'ask', match: '*', effect: 'require_approval' }, allowAll],
    directive: { kind: 'gmail.send' },
    effect: 'deny',
    rule: 'stop',
  },
  {
    name: 'approval beats allow listed first',
    rules: [allowAll, { id: 'ask', match: 'gmail.*', effect: 'require_approval', approval_ttl_seconds: 86400 }],
    directive: { kind: 'gmail.send' },
    effect: 'require_approval',
    rule: 'ask',
    reason: 'rule ask requires approval for gmail.send',
    ttl: 86400,
  },
  {
    name: 'the first rule with the winning effect names the decision',
    rules: [
      { id: 'stop-1', match: 'gmail.*', effect: 'deny', reason: 'first' },
      { id: 'stop-2', match: '*', effect: 'deny', reason: 'second' },
    ],
    directive: { kind: 'gmail.send' },
    effect: 'deny',
    rule: 'stop-1',
    reason: 'first',
  },
  {
    name: 'approval without a ttl leaves the default to the caller',
    rules: [{ id: 'ask', match: '*', effect: 'require_approval' }],
    directive: { kind: 'gmail.send' },
    effect: 'require_approval',
    rule: 'ask',
  },
  // Runtime failures fail closed.
  {
    name: 'failing allow condition does not allow',
    rules: [{ id: 'maybe', match: '*', when: 'params.amount > 1', effect: 'allow' }],
    directive: { kind: 'gmail.send' },
    effect: 'deny',
    rule: null,
    reason: /^no rule allows this directive \(fail-closed\); condition failed to evaluate for rule maybe: No such key: amount$/,
  },
  {
    name: 'failing deny condition denies',
    rules: [allowAll, { id: 'guarded', match: '*', when: 'params.amount / params.count > 10', effect: 'deny', reason: 'too much' }],
    directive: { kind: 'stripe.charge', params: { amount: 100, count: 0 } },
    effect: 'deny',
    rule: 'guarded',
    reason: /^too much \(condition failed to evaluate: division by zero; matched fail-closed\)$/,
  },
  {
    name: 'failing approval condition requires approval',
    rules: [allowAll, { id: 'check', match: '*', when: 'installation.config.strict', effect: 'require_approval', approval_ttl_seconds: 600 }],
    directive: { kind: 'gmail.send' },
    effect: 'require_approval',
    rule: 'check',
    reason: /fail-closed/,
    ttl: 600,
  },
  {
    name: 'non-boolean result in a deny rule denies',
    rules: [allowAll, { id: 'flag', match: '*', when: 'params.flag', effect: 'deny' }],
    directive: { kind: 'gmail.send', params: { flag: 'yes' } },
    effect: 'deny',
    rule: 'flag',
    reason: /expected a boolean, got string/,
  },
  {
    name: 'non-boolean result in an allow rule does not allow',
    rules: [{ id: 'flag', match: '*', when: 'params.flag', effect: 'allow' }],
    directive: { kind: 'gmail.send', params: { flag: 1 } },
    effect: 'deny',
    rule: null,
    reason: /rule flag: expected a boolean, got int/,
  },
  {
    name: 'boolean param as condition',
    rules: [{ id: 'flag', match: '*', when: 'params.flag', effect: 'allow' }],
    directive: { kind: 'gmail.send', params: { flag: true } },
    effect: 'allow',
    rule: 'flag',
  },
];

describe('decide: rules × directives', () => {
  it.each(rows)('$name', (row) => {
    const policy = compilePolicy({ rules: row.rules, ...(row.guards ? { guards: row.guards } : {}) });
    const decision = decide(policy, input(row.directive), row.usage ?? NO_USAGE);
    expect(decision.effect).toBe(row.effect);
    expect(decision.rule).toBe(row.rule);
    if (row.reason instanceof RegExp) expect(decision.reason).toMatch(row.reason);
    else if (row.reason !== undefined) expect(decision.reason).toBe(row.reason);
    expect(decision.approval_ttl_seconds).toBe(row.ttl);
    expect('approval_ttl_seconds' in decision).toBe(row.ttl !== undefined);
  });

  it('EMPTY_POLICY denies everything', () => {
    expect(decide(EMPTY_POLICY, input({ kind: 'gmail.send' }), NO_USAGE)).toEqual({
      effect: 'deny',
      rule: null,
      reason: NO_RULE_REASON,
      guards: [],
    });
  });

  it('treats a condition missing from a hand-built policy as failed, not absent', () => {
    const { document } = compilePolicy({ rules: [{ id: 'maybe', match: '*', when: 'true', effect: 'allow' }] });
    expect(decide({ document, conditions: [] }, input({ kind: 'gmail.send' }), NO_USAGE)).toMatchObject({
      effect: 'deny',
      rule: null,
      reason: /condition was not compiled/,
    });
  });

  it('is deterministic and leaves its inputs untouched', () => {
    const policy = compilePolicy({
      rules: [allowAll, { id: 'big', match: '*', when: 'params.amount > 5', effect: 'require_approval' }],
      guards: { rate_limits: [{ match: '*', limit: 5, window_seconds: 60 }] },
    });
    const directive = input({ kind: 'gmail.send', params: { amount: 6, nested: { list: [1, 2.5] } } });
    const snapshot = structuredClone(directive);
    const first = decide(policy, directive, { rate_limits: [1], budgets: [] });
    expect(decide(policy, directive, { rate_limits: [1], budgets: [] })).toEqual(first);
    expect(directive).toEqual(snapshot);
  });
});

describe('applicableGuards', () => {
  it('returns the indices of the rate-limit and budget guards covering the kind', () => {
    const policy = compilePolicy({
      rules: [],
      guards: {
        rate_limits: [
          { match: 'stripe.*', limit: 1, window_seconds: 60 },
          { match: '*', limit: 1, window_seconds: 60 },
          { match: 'gmail.send', limit: 1, window_seconds: 60 },
        ],
        budgets: [{ match: 'openai.*', monthly_usd: 5 }],
      },
    });
    expect(applicableGuards(policy, 'gmail.send')).toEqual({ rate_limits: [1, 2], budgets: [] });
    expect(applicableGuards(policy, 'openai.chat')).toEqual({ rate_limits: [1], budgets: [0] });
  });
});

describe('decide: properties', () => {
  const ruleArbitrary = fc.record({
    match: fc.constantFrom('*', 'gmail.*', 'gmail.send', 'stripe.*'),
    when: fc.constantFrom(undefined, 'params.amount > 100', 'params.missing > 1', 'actor.type == "agent"', 'params.flag'),
    effect: fc.constantFrom<Effect>('allow', 'deny', 'require_approval'),
  });
  const rulesArbitrary = fc
    .array(ruleArbitrary, { maxLength: 8 })
    .map((rules) =>
      rules.map(({ when, ...rule }, index) => ({ id: `r${index}`, ...rule, ...(when === undefined ? {} : { when }) })),
    );
  const directiveArbitrary = fc.record({
    kind: fc.constantFrom('gmail.send', 'stripe.refund.create', 'webhook.post'),
    params: fc.record({ amount: fc.integer({ min: 0, max: 200 }), flag: fc.constantFrom(true, false, 'x') }),
    actor: fc.record({ type: fc.constantFrom('agent', 'user'), id: fc.constant('a') }),
  });

  it('permuting the rules never changes the effect', () => {
    fc.assert(
      fc.property(
        rulesArbitrary.chain((rules) =>
          fc.tuple(fc.constant(rules), fc.shuffledSubarray(rules, { minLength: rules.length, maxLength: rules.length })),
        ),
        directiveArbitrary,
        ([rules, shuffled], spec) => {
          const directive = input(spec);
          const a = decide(compilePolicy({ rules }), directive, NO_USAGE);
          const b = decide(compilePolicy({ rules: shuffled }), directive, NO_USAGE);
          expect(b.effect).toBe(a.effect);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never allows without an unconditional or true allow rule, and a catch-all deny always denies', () => {
    fc.assert(
      fc.property(rulesArbitrary, directiveArbitrary, (rules, spec) => {
        const directive = input(spec);
        const decision = decide(compilePolicy({ rules }), directive, NO_USAGE);
        if (decision.effect !== 'deny') {
          expect(rules.find((rule) => rule.id === decision.rule)?.effect).toBe(decision.effect);
        }
        const denied = decide(compilePolicy({ rules: [...rules, { id: 'stop', match: '*', effect: 'deny' }] }), directive, NO_USAGE);
        expect(denied.effect).toBe('deny');
      }),
      { numRuns: 300 },
    );
  });
});

describe('decide under the CEL budget', () => {
  const nested = 'params.l.all(a, params.l.all(b, a + b >= 0))';
  const policy = compilePolicy({
    rules: [allowAll, { id: 'costly', match: '*', when: nested, effect: 'deny' }],
  });
  const big = input({ kind: 'noop.record', params: { l: Array.from({ length: 1000 }, (_, i) => i) } });

  it('gives no decision past the budget — not even a fail-closed one — and names the rule', () => {
    let thrown: unknown;
    try {
      decide(policy, big, NO_USAGE);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(CelBudgetExceeded);
    expect(thrown).toMatchObject({ code: 'cel_budget_exceeded', errors: [{ path: 'rules.1.when', message: nested }] });
  });

  // Time is made plentiful: these cases are about steps, on a machine of any speed.
  it('decides normally within the budget, and every rule draws on one budget', () => {
    const small = input({ kind: 'noop.record', params: { l: [1, 2, 3] } });
    expect(decide(policy, small, NO_USAGE, celBudget({ timeoutMs: 60_000 })).effect).toBe('deny');
    const shared = celBudget({ maxCost: 10_000, timeoutMs: 60_000 });
    decide(policy, small, NO_USAGE, shared);
    expect(shared.used).toBeGreaterThan(0);
    const many = compilePolicy({ rules: Array.from({ length: 40 }, (_, i) => ({ id: `r${i}`, match: '*', when: 'params.l.all(a, a > 0)', effect: 'allow' })) });
    const list = input({ kind: 'noop.record', params: { l: Array.from({ length: 100 }, (_, i) => i + 1) } });
    expect(decide(many, list, NO_USAGE, celBudget({ timeoutMs: 60_000 })).effect).toBe('allow');
    expect(() => decide(many, list, NO_USAGE, celBudget({ maxCost: 10_000, timeoutMs: 60_000 }))).toThrow(CelBudgetExceeded);
  });
});
