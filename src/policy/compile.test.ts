import { describe, expect, it } from 'vitest';
import { DomainError, type FieldError } from '../core/errors.ts';
import { celCacheSize } from './cel-program.ts';
import { compilePolicy } from './compile.ts';
import { decide } from './evaluate.ts';

function errorsOf(input: unknown): FieldError[] {
  try {
    compilePolicy(input);
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    const domainError = error as DomainError;
    expect(domainError.code).toBe('validation_failed');
    expect(domainError.status).toBe(422);
    return domainError.errors ?? [];
  }
  throw new Error('expected compilePolicy to throw');
}

describe('compilePolicy: documents', () => {
  it('accepts a minimal document and fills in empty guards', () => {
    const policy = compilePolicy({ rules: [{ id: 'all', match: '*', effect: 'allow' }] });
    expect(policy.document.guards).toEqual({ rate_limits: [], budgets: [], lists: [] });
    expect(policy.conditions).toEqual([null]);
  });

  it('rejects an unknown effect at its path', () => {
    const errors = errorsOf({ rules: [{ id: 'a', match: '*', effect: 'allow' }, { id: 'b', match: '*', effect: 'maybe' }] });
    expect(errors.map((error) => error.path)).toEqual(['rules.1.effect']);
  });

  it('rejects duplicate rule ids at the second occurrence', () => {
    const errors = errorsOf({
      rules: [
        { id: 'same', match: '*', effect: 'allow' },
        { id: 'other', match: '*', effect: 'allow' },
        { id: 'same', match: 'gmail.*', effect: 'deny' },
      ],
    });
    expect(errors).toEqual([{ path: 'rules.2.id', message: "duplicate rule id 'same'" }]);
  });

  it('rejects unknown fields in rules, guards and the document', () => {
    expect(errorsOf({ rules: [{ id: 'a', match: '*', effect: 'allow', priority: 1 }] })).toEqual([
      { path: 'rules.0', message: expect.stringContaining('priority') },
    ]);
    expect(errorsOf({ rules: [], guards: { rate_limits: [{ match: '*', limit: 1, window_seconds: 60, burst: 2 }] } })).toEqual([
      { path: 'guards.rate_limits.0', message: expect.stringContaining('burst') },
    ]);
    expect(errorsOf({ rules: [], guards: { quotas: [] } })).toEqual([{ path: 'guards', message: expect.stringContaining('quotas') }]);
    expect(errorsOf({ rules: [], version: 2 })).toEqual([{ path: '', message: expect.stringContaining('version') }]);
  });

  it.each([['Gmail.*'], ['gmail*'], ['gmail.*.send'], ['*.send'], ['gmail.'], ['']])('rejects the kind glob %j', (match) => {
    expect(errorsOf({ rules: [{ id: 'a', match, effect: 'allow' }] }).map((error) => error.path)).toEqual(['rules.0.match']);
  });

  it('reports every bad field, with guard paths', () => {
    const errors = errorsOf({
      rules: [{ id: 'Bad Id', match: '*', effect: 'allow', approval_ttl_seconds: 5 }],
      guards: { budgets: [{ match: '*', monthly_usd: -1 }], lists: [{ match: '*' }] },
    });
    expect(errors.map((error) => error.path).sort()).toEqual(
      ['guards.budgets.0.monthly_usd', 'guards.lists.0.param', 'rules.0.approval_ttl_seconds', 'rules.0.id'].sort(),
    );
  });

  it('rejects a document that is not an object', () => {
    expect(errorsOf(null)).toHaveLength(1);
    expect(errorsOf({}).map((error) => error.path)).toEqual(['rules']);
  });
});

describe('compilePolicy: CEL', () => {
  const withWhen = (...whens: string[]) => ({
    rules: whens.map((when, index) => ({ id: `r${index}`, match: '*', when, effect: 'deny' })),
  });

  it('reports a syntax error at rules.N.when with line, column and offset', () => {
    expect(errorsOf(withWhen('params.amount > 1', 'params.amount >'))).toEqual([
      { path: 'rules.1.when', message: 'Unexpected token: EOF at line 1, column 16 (offset 15)' },
    ]);
  });

  it('counts lines and columns in multi-line expressions', () => {
    const [error] = errorsOf(withWhen('params.amount > 1 &&\n  (actor.type == "agent"'));
    expect(error?.path).toBe('rules.0.when');
    expect(error?.message).toMatch(/at line 2, column 25 \(offset 45\)$/);
  });

  it('reports an unknown variable as a check error with its position', () => {
    expect(errorsOf(withWhen('parms.amount > 1'))).toEqual([
      { path: 'rules.0.when', message: 'Unknown variable: parms at line 1, column 1 (offset 0)' },
    ]);
  });

  it('reports a type error', () => {
    expect(errorsOf(withWhen('actor.type == "a" && 1 + "x" == "y"'))[0]?.message).toMatch(
      /^no such overload: int \+ string at line 1, column 22 \(offset 21\)$/,
    );
  });

  it('rejects a condition that can never be a boolean', () => {
    expect(errorsOf(withWhen('size(params)'))[0]?.message).toBe(
      'when must be a boolean expression, but it has type int at line 1, column 1 (offset 0)',
    );
  });

  it('reports every bad rule, not just the first', () => {
    const errors = errorsOf(withWhen('params.a >', 'params.a > 1', 'foo == 1', '"x" + 1 == 2'));
    expect(errors.map((error) => error.path)).toEqual(['rules.0.when', 'rules.2.when', 'rules.3.when']);
    for (const error of errors) expect(error.message).toMatch(/at line \d+, column \d+ \(offset \d+\)$/);
  });

  it('reuses compiled conditions by expression text, with a bounded cache', () => {
    const first = compilePolicy(withWhen('params.amount > 12345'));
    const second = compilePolicy(withWhen('params.amount > 12345'));
    expect(second.conditions[0]).toBe(first.conditions[0]);
    for (let i = 0; i < 1100; i++) compilePolicy(withWhen(`params.amount > ${i}`));
    expect(celCacheSize()).toBeLessThanOrEqual(1000);
  });
});

describe('compilePolicy of a stored document', () => {
  it('fails a condition closed when it no longer compiles, instead of refusing the whole policy', () => {
    const deep = `params.l.all(a, params.l.all(b, params.l.all(c, a + b + c >= 0)))`;
    const document = { rules: [{ id: 'costly', match: '*', when: deep, effect: 'deny' }, { id: 'ok', match: '*', effect: 'allow' }] };
    expect(() => compilePolicy(document)).toThrow(DomainError);
    const policy = compilePolicy(document, { stored: true });
    const decision = decide(policy, {
      directive: { kind: 'noop.record', idempotency_key: 'k', causation_id: null, installation_id: null, estimated_cost_usd: 0 },
      params: { l: [] },
      actor: { type: 'human', id: 'ana' },
      installation: null,
      org: { id: 'org_1', slug: 'acme' },
    }, { rate_limits: [], budgets: [] });
    expect(decision.effect).toBe('deny');
    expect(decision.reason).toMatch(/condition failed to evaluate: the expression's estimated cost \d+ exceeds/);
  });
});
