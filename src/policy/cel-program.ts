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
 * The instrumentation reads cel-js's AST internals, which is why cel-js is
 * pinned to an exact version.
 */
import { Environment } from '@marcbachmann/cel-js';
import { RE2JS } from 're2js';
import { DomainError, type FieldError } from '../core/errors.ts';
import {
  childrenOf,
  costliestComprehension,
  deepestNode,
  estimateCost,
  lexicalNestingOverflow,
  type CelNode,
} from './cel-bounds.ts';

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

/** Steps and time left for one decision; pass the same budget to every expression it evaluates. */
export interface CelBudget {
  readonly maxCost: number;
  readonly timeoutMs: number;
  /** `performance.now()` past which evaluation stops. */
  readonly deadline: number;
  used: number;
  exceeded?: 'cost' | 'time';
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

// The budget of the evaluation running now. Evaluation is synchronous (no
// async function is registered), so one slot suffices.
let current: CelBudget | null = null;
// Check the clock every so many steps: cheap enough, and fine-grained enough
// that the deadline is overrun by far less than a millisecond of steps.
const CLOCK_EVERY = 256;

// Thrown inside the engine once the budget is spent; `evaluate` turns it
// into a CelBudgetExceeded naming the expression. One shared object: no
// stack is captured per refused step.
const SPENT = runtimeError('the CEL budget is spent');

function charge(units: number): void {
  const budget = current;
  if (budget === null) return;
  if (budget.exceeded) throw SPENT;
  const before = budget.used;
  budget.used += units;
  if (budget.used > budget.maxCost) budget.exceeded = 'cost';
  else if (Math.floor(before / CLOCK_EVERY) !== Math.floor(budget.used / CLOCK_EVERY) && performance.now() > budget.deadline) {
    budget.exceeded = 'time';
  }
  // Once exceeded, every later step throws too: quantifiers and `||`/`&&`
  // absorb errors and carry on, but can no longer do any work.
  if (budget.exceeded) throw SPENT;
}

/** What reading a value costs beyond the step: its elements, or its characters by the 64. */
function sizeOf(value: unknown): number {
  if (typeof value === 'string') return value.length >>> 6;
  if (Array.isArray(value)) return value.length;
  if (value instanceof Uint8Array) return value.length >>> 6;
  if (value instanceof Map || value instanceof Set) return value.size;
  return 0;
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
  instrument(root, text);

  return {
    text,
    estimatedCost,
    type: checked.type ?? 'dyn',
    evaluate: (activation, budget = celBudget()) => {
      const outer = current;
      current = budget;
      try {
        const value = program(activation);
        if (budget.exceeded) throw spent(text, budget);
        return value;
      } catch (error) {
        // Whatever was thrown once the budget ran out is the budget's doing.
        if (budget.exceeded) throw spent(text, budget);
        throw error;
      } finally {
        current = outer;
      }
    },
  };
}

function spent(text: string, budget: CelBudget): CelBudgetExceeded {
  const limit = budget.exceeded ?? 'cost';
  return new CelBudgetExceeded(text, limit, limit === 'cost' ? budget.maxCost : budget.timeoutMs);
}

/** A runtime failure shaped like cel-js's own (`summary` is what callers show). */
function runtimeError(summary: string): Error {
  return Object.assign(new Error(summary), { summary });
}

const patterns = new Map<string, RE2JS>();

/** RE2, cached per pattern (bounded like the expression cache). */
function re2(pattern: string): RE2JS {
  let compiled = patterns.get(pattern);
  if (!compiled) {
    compiled = RE2JS.compile(pattern);
    if (patterns.size >= CACHE_LIMIT) patterns.delete(patterns.keys().next().value!);
    patterns.set(pattern, compiled);
  }
  return compiled;
}

type Evaluate = CelNode['evaluate'];
type Handle = (...args: unknown[]) => unknown;
const CHARGED_OPERATORS = new Set(['+', 'in', '==', '!=']);

/**
 * Gives every node an own `evaluate` that charges a step before running what
 * cel-js would run (node → macro expansion → operator), charges operand sizes
 * for calls and size-dependent operators, and replaces `matches` by RE2.
 */
function instrument(root: CelNode, text: string): void {
  const seen = new Set<CelNode>();
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    stack.push(...childrenOf(node));
    const inner = innerEvaluate(node, text);
    node.evaluate = (ev, ast, ctx) => {
      charge(1);
      return inner(ev, ast, ctx);
    };
  }
}

function innerEvaluate(node: CelNode, text: string): Evaluate {
  const { alternate, macro, evaluate } = node.meta;
  if (alternate) return (ev, _ast, ctx) => alternate.evaluate(ev, alternate, ctx);
  if (macro) {
    const expansion = macro as { evaluate: Evaluate };
    return (ev, _ast, ctx) => expansion.evaluate(ev, expansion as unknown as CelNode, ctx);
  }
  const run = (ev: unknown, child: CelNode, ctx: unknown) => child.evaluate(ev, child, ctx);
  const withHandle = node as unknown as { handle: Handle; left: CelNode; right: CelNode; receiverWithArgs: CelNode[]; args: unknown[] };
  if (node.op === 'rcall' && withHandle.args[0] === 'matches' && withHandle.receiverWithArgs.length === 2) {
    return matchesEvaluate(withHandle.receiverWithArgs as [CelNode, CelNode], text, run);
  }
  if (node.op === 'rcall' || node.op === 'call') {
    const operands = node.op === 'rcall' ? withHandle.receiverWithArgs : (withHandle.args[1] as CelNode[]);
    return (ev, _ast, ctx) => {
      const values = operands.map((operand) => run(ev, operand, ctx));
      charge(values.reduce<number>((sum, value) => sum + sizeOf(value), 0));
      return node.op === 'rcall' ? withHandle.handle(values, ev, node) : withHandle.handle(values, node, ev);
    };
  }
  if (CHARGED_OPERATORS.has(node.op)) {
    return (ev, _ast, ctx) => {
      const left = run(ev, withHandle.left, ctx);
      const right = run(ev, withHandle.right, ctx);
      charge(sizeOf(left) + sizeOf(right));
      return withHandle.handle(left, right, node, ev);
    };
  }
  const original = evaluate as Evaluate;
  return (ev, ast, ctx) => original.call(node, ev, ast, ctx);
}

/** `s.matches(re)` on RE2: a literal pattern is checked here, at compile time. */
function matchesEvaluate(
  [receiver, patternNode]: [CelNode, CelNode],
  text: string,
  run: (ev: unknown, child: CelNode, ctx: unknown) => unknown,
): Evaluate {
  if (patternNode.op === 'value' && typeof patternNode.args === 'string') {
    try {
      re2(patternNode.args);
    } catch (error) {
      throw new CelCompileError(
        `invalid regular expression (RE2 syntax): ${(error as Error).message}`,
        ...where(text, patternNode.start),
      );
    }
  }
  return (ev, _ast, ctx) => {
    const subject = run(ev, receiver, ctx);
    const pattern = run(ev, patternNode, ctx);
    if (typeof subject !== 'string' || typeof pattern !== 'string') {
      throw runtimeError(`found no matching overload for 'matches' on ${typeof subject} and ${typeof pattern}`);
    }
    charge(sizeOf(subject) + sizeOf(pattern) + 1);
    let compiled: RE2JS;
    try {
      compiled = re2(pattern);
    } catch {
      throw runtimeError(`Invalid regular expression: ${pattern}`);
    }
    return compiled.test(subject);
  };
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
