import { afterEach, describe, expect, it } from 'vitest';
import { RE2JS } from 're2js';
import {
  CelBudgetExceeded,
  CelCompileError,
  celBudget,
  compile,
  DEFAULT_CEL_LIMITS,
  setCelLimits,
} from './cel-program.ts';

const variables = { params: 'map' } as const;
const program = (text: string) => compile(text, { variables });
const list = (length: number) => Array.from({ length }, (_, i) => BigInt(i));

function compileError(text: string): CelCompileError {
  try {
    program(text);
  } catch (error) {
    if (error instanceof CelCompileError) return error;
    throw error;
  }
  throw new Error(`${text.slice(0, 40)} compiled`);
}

function budgetError(run: () => unknown): CelBudgetExceeded {
  try {
    run();
  } catch (error) {
    if (error instanceof CelBudgetExceeded) return error;
    throw error;
  }
  throw new Error('the budget held');
}

afterEach(() => setCelLimits(DEFAULT_CEL_LIMITS));

describe('compile: what is refused, and where', () => {
  it('refuses an expression over the length limit, at the limit', () => {
    const error = compileError(`params.a == "${'x'.repeat(DEFAULT_CEL_LIMITS.maxLength)}"`);
    expect(error.summary).toBe(`the expression is longer than ${DEFAULT_CEL_LIMITS.maxLength} characters`);
    expect(error.offset).toBe(DEFAULT_CEL_LIMITS.maxLength);
  });

  it.each([
    ['10,000 nested parentheses', `${'('.repeat(10_000)}1${')'.repeat(10_000)} == 1`, 32],
    ['10,000 negations', `${'!'.repeat(10_000)}true`, 32],
    ['10,000 unary minus', `${'-'.repeat(10_000)}1 == 1`, 32],
    ['a chain of 3,000 additions', `1${' + 1'.repeat(3_000)} > 0`, 32],
    ['nested lists', `size(${'['.repeat(5_000)}${']'.repeat(5_000)}) > 0`, 33],
  ])('refuses %s by depth, with a position, never a stack overflow', (_, text, offset) => {
    setCelLimits({ ...DEFAULT_CEL_LIMITS, maxLength: 100_000 });
    const error = compileError(text);
    expect(error.summary).toBe(`the expression nests deeper than ${DEFAULT_CEL_LIMITS.maxDepth} levels`);
    expect(error.message).not.toMatch(/call stack/i);
    if (offset !== undefined) expect(error.offset).toBeGreaterThanOrEqual(offset - 1);
  });

  it('counts brackets inside string literals as text', () => {
    expect(program(`params.s == "${'('.repeat(100)}" && params.t == '${'['.repeat(100)}' && params.u == r"\\${'{'.repeat(50)}"`).type).toBe('bool');
  });

  it('refuses comprehensions nested so deep their estimated cost is over the limit, pointing at the outer one', () => {
    const error = compileError('params.n > 0 && params.l.all(a, params.l.all(b, params.l.all(c, a + b + c >= 0)))');
    expect(error.summary).toMatch(/estimated cost \d+ exceeds the limit of 1000000 steps/);
    expect(error.column).toBe(17);
    // Two levels are admitted: their cost depends on the data, and is bounded at run time.
    expect(program('params.l.all(a, params.l.all(b, a + b >= 0))').estimatedCost).toBeLessThan(DEFAULT_CEL_LIMITS.maxCost);
  });

  it('refuses a literal pattern RE2 cannot run (backreferences, lookaround), at the pattern', () => {
    for (const pattern of ['(?=a)b', '(a)\\\\1']) {
      const error = compileError(`params.s.matches("${pattern}")`);
      expect(error.summary).toMatch(/^invalid regular expression \(RE2 syntax\)/);
      expect(error.offset).toBe('params.s.matches('.length);
    }
  });

  it('reports parse and type errors with line and column', () => {
    const error = compileError('params.a ==\n  parms.b');
    expect(error.message).toBe('Unknown variable: parms at line 2, column 3 (offset 14)');
  });
});

describe('evaluate: regular expressions on RE2', () => {
  it('answers the catastrophic-backtracking pattern in linear time', () => {
    const redos = program('params.s.matches("^(a+)+$")');
    expect(redos.evaluate({ params: { s: `${'a'.repeat(28)}b` } })).toBe(false);
    // Linear: a hundred thousand characters stay well inside the budget.
    expect(redos.evaluate({ params: { s: `${'a'.repeat(100_000)}b` } }, celBudget({ timeoutMs: 10_000 }))).toBe(false);
    expect(redos.evaluate({ params: { s: 'aaaa' } })).toBe(true);
  });

  it('searches like CEL matches(): anywhere in the string unless anchored', () => {
    expect(program('params.s.matches("b+")').evaluate({ params: { s: 'abbc' } })).toBe(true);
    expect(program('params.s.matches("^b+$")').evaluate({ params: { s: 'abbc' } })).toBe(false);
  });

  it('compiles a pattern from data with RE2 too, and refuses what RE2 refuses at run time', () => {
    const dynamic = program('params.s.matches(params.p)');
    expect(dynamic.evaluate({ params: { s: `${'a'.repeat(40)}b`, p: '^(a|aa)+$' } })).toBe(false);
    expect(() => dynamic.evaluate({ params: { s: 'ab', p: '(?<=a)b' } })).toThrow(/Invalid regular expression/);
    expect(() => RE2JS.compile('(?<=a)b')).toThrow();
  });
});

describe('evaluate: the budget', () => {
  it('stops nested comprehensions over large lists with cel_budget_exceeded naming the expression', () => {
    const text = 'params.l.all(a, params.l.all(b, a + b >= 0))';
    const error = budgetError(() => program(text).evaluate({ params: { l: list(1000) } }));
    expect(error.code).toBe('cel_budget_exceeded');
    expect(error.status).toBe(422);
    expect(error.expression).toBe(text);
    expect(['cost', 'time']).toContain(error.limit);
  });

  it('counts steps: the cost limit is reached deterministically when time is plentiful', () => {
    const error = budgetError(() =>
      program('params.l.all(a, params.l.all(b, a + b >= 0))').evaluate({ params: { l: list(1000) } }, celBudget({ maxCost: 50_000, timeoutMs: 60_000 })),
    );
    expect(error.limit).toBe('cost');
    expect(error.message).toBe('a CEL expression exceeded the cost limit of 50000 steps');
  });

  it('charges for the size of what operators and calls read, not only for steps', () => {
    // Few steps, but each `in` scans the whole list.
    const budget = celBudget({ timeoutMs: 60_000 });
    expect(() => program('params.l.all(a, a in params.l)').evaluate({ params: { l: list(2000) } }, budget)).toThrow(CelBudgetExceeded);
    const small = celBudget({ timeoutMs: 60_000 });
    program('params.l.exists(a, a == 3)').evaluate({ params: { l: list(10) } }, small);
    expect(small.used).toBeGreaterThan(0);
    expect(small.used).toBeLessThan(100);
  });

  it('stops at the wall-clock limit when the steps are allowed', () => {
    const error = budgetError(() =>
      program('params.l.all(a, params.l.all(b, a + b >= 0))').evaluate({ params: { l: list(3000) } }, celBudget({ maxCost: 1e9, timeoutMs: 5 })),
    );
    expect(error.limit).toBe('time');
  });

  it('is shared by the expressions of one decision', () => {
    const budget = celBudget({ maxCost: 1000, timeoutMs: 60_000 });
    const rule = program('params.l.exists(a, a == 99)');
    rule.evaluate({ params: { l: list(100) } }, budget);
    expect(() => rule.evaluate({ params: { l: list(100) } }, budget)).toThrow(CelBudgetExceeded);
  });

  it('is not absorbed by || or by a quantifier that swallows errors', () => {
    const budget = () => celBudget({ maxCost: 5_000, timeoutMs: 60_000 });
    const l = list(200);
    expect(() => program('params.l.exists(a, params.l.exists(b, a + b < 0)) || true').evaluate({ params: { l } }, budget())).toThrow(CelBudgetExceeded);
    expect(() => program('params.l.all(a, params.l.map(b, b).size() > 0 || a > 0)').evaluate({ params: { l } }, budget())).toThrow(CelBudgetExceeded);
  });

  it('leaves an expression usable after it ran out of budget', () => {
    const rule = program('params.l.all(a, params.l.all(b, a + b >= 0))');
    expect(() => rule.evaluate({ params: { l: list(1000) } })).toThrow(CelBudgetExceeded);
    expect(rule.evaluate({ params: { l: list(20) } }, celBudget({ timeoutMs: 60_000 }))).toBe(true);
  });

  it('evaluates ordinary expressions as cel-js does', () => {
    const activation = { params: { amount: 12n, tags: ['a', 'b'], nested: { x: 'y' } } };
    expect(program('params.amount > 10 && "b" in params.tags && has(params.nested.x)').evaluate(activation)).toBe(true);
    expect(program('params.tags.map(t, t + "!").filter(t, t != "a!")').evaluate(activation)).toEqual(['b!']);
    expect(program('cel.bind(n, params.amount * 2, n + 1)').evaluate(activation)).toBe(25n);
    expect(program('params.nested.x.startsWith("y") && size(params.tags) == 2').evaluate(activation)).toBe(true);
  });
});
