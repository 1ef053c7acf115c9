/**
 * The one way signalbus compiles and runs CEL — policy conditions,
 * subscription conditions, package rule handlers and entity projections all
 * come through here, so no tenant's expression can stall the process:
 *
 * - at compile time: a length cap, a nesting cap (checked before the parser
 *   recurses), a static cost estimate, and literal regular expressions
 *   compiled by RE2;
 * - at run time: a step counter charged for every node evaluated (and for
 *   the size of lists and strings that calls and operators read) and a
 *   wall-clock deadline, shared by all expressions of one decision;
 * - `matches()` runs on RE2 (re2js), linear in its input; the library's
 *   backtracking RegExp is never used.
 *
 * Bounds are in cel-bounds.ts, metering and RE2 in cel-metering.ts; both read
 * cel-js's AST internals, which is why cel-js is pinned to an exact version.
 */
import { Environment } from '@marcbachmann/cel-js';
import { DomainError, type FieldError } from '../core/errors.ts';
import {
  costliestComprehension,
  deepestNode,
  estimateCost,
  lexicalNestingOverflow,
  type CelNode,
} from './cel-bounds.ts';
import { instrument, metered, type CelBudget } from './cel-metering.ts';

export type { CelBudget } from './cel-metering.ts';

export interface CelLimits {
  /** Longest expression text, in characters. */
  maxLength: number;
  /** Deepest nesting of brackets, unary operators or operator chains. */
  maxDepth: number;
  /** Steps one budget allows, and the most an expression may be estimated to cost. */
  maxCost: number;
  /** Wall-clock time one budget allows. */
  timeoutMs: number;
}

export const DEFAULT_CEL_LIMITS: Readonly<CelLimits> = Object.freeze({
  maxLength: 4096,
  maxDepth: 32,
  maxCost: 1_000_000,
  timeoutMs: 50,
});

let limits: Readonly<CelLimits> = DEFAULT_CEL_LIMITS;

/** Sets the process-wide limits (from config, at startup); compiled expressions are dropped. */
export function setCelLimits(next: CelLimits): void {
  limits = Object.freeze({ ...next });
  cache.clear();
}

export function celLimits(): Readonly<CelLimits> {
  return limits;
}

/** Why an expression cannot be compiled, with where: offset 0-based, line and column 1-based. */
export class CelCompileError extends Error {
  constructor(
    readonly summary: string,
    readonly offset: number,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${summary} at line ${line}, column ${column} (offset ${offset})`);
    this.name = 'CelCompileError';
  }
}

/**
 * An evaluation ran past its budget. A DomainError, so the API answers it as
 * 422 `cel_budget_exceeded`; it carries the expression, so a handler run can
 * record it on a failed execution.
 */
export class CelBudgetExceeded extends DomainError {
  constructor(
    readonly expression: string,
    readonly limit: 'cost' | 'time',
    /** The limit that was reached: steps, or milliseconds. */
    readonly allowed: number,
    errors?: FieldError[],
  ) {
    super(
      'cel_budget_exceeded',
      limit === 'cost'
        ? `a CEL expression exceeded the cost limit of ${allowed} steps`
        : `a CEL expression exceeded the time limit of ${allowed} ms`,
      errors ?? [{ path: 'expression', message: expression }],
    );
    this.name = 'CelBudgetExceeded';
  }

  /** The same failure, naming where the expression lives (e.g. `rules.2.when`). */
  at(path: string): CelBudgetExceeded {
    return new CelBudgetExceeded(this.expression, this.limit, this.allowed, [{ path, message: this.expression }]);
  }
}

export function celBudget(overrides: Partial<Pick<CelLimits, 'maxCost' | 'timeoutMs'>> = {}): CelBudget {
  const { maxCost, timeoutMs } = { ...limits, ...overrides };
  return { maxCost, timeoutMs, deadline: performance.now() + timeoutMs, used: 0 };
}

export interface CelProgram {
  readonly text: string;
  /** The static estimate the expression was admitted with. */
  readonly estimatedCost: number;
  /** The result type the checker inferred (`bool`, `dyn`, …). */
  readonly type: string;
  /** @throws CelBudgetExceeded past the budget; other errors are CEL runtime errors (with `summary`). */
  evaluate(activation: Record<string, unknown>, budget?: CelBudget): unknown;
}

/** A CEL type name (`map`, `dyn`, `string`, …), or an object whose fields are declared. */
export type CelVariable = string | { schema: Readonly<Record<string, string>> };

export interface CompileOptions {
  /** Variable name → its type. */
  variables: Readonly<Record<string, CelVariable>>;
}

const environments = new Map<string, Environment>();

function environmentFor(variables: CompileOptions['variables']): { key: string; environment: Environment } {
  const key = JSON.stringify(Object.entries(variables).sort(([a], [b]) => (a < b ? -1 : 1)));
  let environment = environments.get(key);
  if (!environment) {
    // The parser's own depth limit stays above ours: ours runs first and names the position.
    environment = new Environment({ limits: { maxDepth: 250 } });
    for (const [name, type] of Object.entries(variables)) {
      if (typeof type === 'string') environment.registerVariable(name, type);
      else environment.registerVariable(name, { schema: { ...type.schema } });
    }
    environments.set(key, environment);
  }
  return { key, environment };
}

// Compiled forms depend only on (variables, text, limits). Bounded so a
// tenant rewriting its expressions in a loop cannot grow memory without limit.
const CACHE_LIMIT = 1000;
const cache = new Map<string, CelProgram | CelCompileError>();

/**
 * Compiles an expression under the current limits.
 * @throws CelCompileError naming the position of the problem.
 */
export function compile(text: string, options: CompileOptions): CelProgram {
  const { key, environment } = environmentFor(options.variables);
  const cacheKey = `${key}\u0000${text}`;
  let compiled = cache.get(cacheKey);
  if (compiled) cache.delete(cacheKey);
  else {
    try {
      compiled = compileUncached(text, environment);
    } catch (error) {
      if (!(error instanceof CelCompileError)) throw error;
      compiled = error;
    }
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
  }
  // Re-inserted so eviction drops the least recently used entry.
  cache.set(cacheKey, compiled);
  if (compiled instanceof CelCompileError) throw compiled;
  return compiled;
}

/** Test hook: the number of cached compilations. */
export function celCacheSize(): number {
  return cache.size;
}

function compileUncached(text: string, environment: Environment): CelProgram {
  const fail = (summary: string, offset: number) => new CelCompileError(summary, ...where(text, offset));
  if (text.length > limits.maxLength) {
    throw fail(`the expression is longer than ${limits.maxLength} characters`, limits.maxLength);
  }
  const overflow = lexicalNestingOverflow(text, limits.maxDepth);
  if (overflow !== undefined) throw fail(`the expression nests deeper than ${limits.maxDepth} levels`, overflow);

  let program: ReturnType<Environment['parse']>;
  try {
    program = environment.parse(text);
  } catch (error) {
    throw describe(error, text);
  }
  const root = program.ast as unknown as CelNode;
  const deep = deepestNode(root, limits.maxDepth);
  if (deep) throw fail(`the expression nests deeper than ${limits.maxDepth} levels`, deep.start);

  const checked = program.check();
  if (!checked.valid) throw describe(checked.error, text);

  const estimatedCost = estimateCost(root);
  if (estimatedCost > limits.maxCost) {
    throw fail(
      `the expression's estimated cost ${estimatedCost} exceeds the limit of ${limits.maxCost} steps (nested comprehensions multiply)`,
      costliestComprehension(root)?.start ?? 0,
    );
  }
  instrument(root, (summary, offset) => {
    throw fail(summary, offset);
  });

  return {
    text,
    estimatedCost,
    type: checked.type ?? 'dyn',
    evaluate: (activation, budget = celBudget()) => {
      try {
        const value = metered(budget, () => program(activation));
        if (budget.exceeded) throw spent(text, budget);
        return value;
      } catch (error) {
        // Whatever was thrown once the budget ran out is the budget's doing.
        if (budget.exceeded) throw spent(text, budget);
        throw error;
      }
    },
  };
}

function spent(text: string, budget: CelBudget): CelBudgetExceeded {
  const limit = budget.exceeded ?? 'cost';
  return new CelBudgetExceeded(text, limit, limit === 'cost' ? budget.maxCost : budget.timeoutMs);
}

function describe(error: unknown, text: string): CelCompileError {
  const details = error as { summary?: unknown; message?: unknown; range?: { start?: unknown } } | undefined;
  // The parser's recursion is bounded by the checks above; should anything
  // still overflow, say what it means instead of leaking the engine's words.
  if (error instanceof RangeError) return new CelCompileError(`the expression nests too deeply`, ...where(text, 0));
  const summary =
    typeof details?.summary === 'string'
      ? details.summary
      : typeof details?.message === 'string'
        ? details.message.split('\n')[0]!
        : 'invalid expression';
  const start = typeof details?.range?.start === 'number' ? details.range.start : 0;
  return new CelCompileError(summary, ...where(text, start));
}

function where(text: string, offset: number): [number, number, number] {
  const clamped = Math.max(0, Math.min(offset, text.length));
  const before = text.slice(0, clamped);
  const line = before.split('\n').length;
  const column = clamped - (before.lastIndexOf('\n') + 1) + 1;
  return [clamped, line, column];
}

/**
 * Where a runtime error arose in `text`: the engine's summary and the
 * failing node's line and column (1-based), for a failed execution to name.
 */
export function runtimeErrorAt(error: unknown, text: string): { summary: string; line: number; column: number } {
  const details = error as { summary?: unknown; range?: { start?: unknown } } | undefined;
  const summary = typeof details?.summary === 'string' ? details.summary : error instanceof Error ? error.message.split('\n')[0]! : 'evaluation failed';
  const [, line, column] = where(text, typeof details?.range?.start === 'number' ? details.range.start : 0);
  return { summary, line, column };
}
