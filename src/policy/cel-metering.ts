/**
 * Metering a CEL evaluation: cel-js's AST nodes get an own `evaluate` that
 * charges the running budget a step (plus the size of what calls and
 * size-dependent operators read) before doing what cel-js would do, and
 * `matches` runs on RE2. The AST shape read here is cel-js 8.0.0's, pinned.
 */
import { RE2JS } from 're2js';
import { childrenOf, type CelNode } from './cel-bounds.ts';

/** Steps and time left for one decision; pass the same budget to every expression it evaluates. */
export interface CelBudget {
  readonly maxCost: number;
  readonly timeoutMs: number;
  /** `performance.now()` past which evaluation stops. */
  readonly deadline: number;
  used: number;
  exceeded?: 'cost' | 'time';
}

// The budget of the evaluation running now. Evaluation is synchronous (no
// async function is registered), so one slot suffices.
let current: CelBudget | null = null;

/** Runs `evaluate` with `budget` as the one charged. */
export function metered<T>(budget: CelBudget, evaluate: () => T): T {
  const outer = current;
  current = budget;
  try {
    return evaluate();
  } finally {
    current = outer;
  }
}

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

/** A runtime failure shaped like cel-js's own (`summary` is what callers show). */
export function runtimeError(summary: string): Error {
  return Object.assign(new Error(summary), { summary });
}

// Bounded, so patterns taken from data cannot grow memory without limit.
const PATTERN_CACHE_LIMIT = 1000;
const patterns = new Map<string, RE2JS>();

/** RE2, cached per pattern. */
function re2(pattern: string): RE2JS {
  let compiled = patterns.get(pattern);
  if (!compiled) {
    compiled = RE2JS.compile(pattern);
    if (patterns.size >= PATTERN_CACHE_LIMIT) patterns.delete(patterns.keys().next().value!);
    patterns.set(pattern, compiled);
  }
  return compiled;
}

/** Refuses the expression at compile time: a summary and the offset it is about. */
export type Refuse = (summary: string, offset: number) => never;
type Evaluate = CelNode['evaluate'];
type Handle = (...args: unknown[]) => unknown;
const CHARGED_OPERATORS = new Set(['+', 'in', '==', '!=']);

/**
 * Gives every node an own `evaluate` that charges a step before running what
 * cel-js would run (node → macro expansion → operator), charges operand sizes
 * for calls and size-dependent operators, and replaces `matches` by RE2.
 */
export function instrument(root: CelNode, refuse: Refuse): void {
  const seen = new Set<CelNode>();
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (seen.has(node)) continue;
    seen.add(node);
    stack.push(...childrenOf(node));
    const inner = innerEvaluate(node, refuse);
    node.evaluate = (ev, ast, ctx) => {
      charge(1);
      return inner(ev, ast, ctx);
    };
  }
}

function innerEvaluate(node: CelNode, refuse: Refuse): Evaluate {
  const { alternate, macro, evaluate } = node.meta;
  if (alternate) return (ev, _ast, ctx) => alternate.evaluate(ev, alternate, ctx);
  if (macro) {
    const expansion = macro as { evaluate: Evaluate };
    return (ev, _ast, ctx) => expansion.evaluate(ev, expansion as unknown as CelNode, ctx);
  }
  const run = (ev: unknown, child: CelNode, ctx: unknown) => child.evaluate(ev, child, ctx);
  const withHandle = node as unknown as { handle: Handle; left: CelNode; right: CelNode; receiverWithArgs: CelNode[]; args: unknown[] };
  if (node.op === 'rcall' && withHandle.args[0] === 'matches' && withHandle.receiverWithArgs.length === 2) {
    return matchesEvaluate(withHandle.receiverWithArgs as [CelNode, CelNode], refuse, run);
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
  refuse: Refuse,
  run: (ev: unknown, child: CelNode, ctx: unknown) => unknown,
): Evaluate {
  if (patternNode.op === 'value' && typeof patternNode.args === 'string') {
    try {
      re2(patternNode.args);
    } catch (error) {
      refuse(`invalid regular expression (RE2 syntax): ${(error as Error).message}`, patternNode.start);
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
