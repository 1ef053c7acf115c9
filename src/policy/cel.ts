/**
 * The CEL side of policy: one shared environment, a bounded cache of compiled
 * conditions, and the conversion of JSON inputs into CEL values.
 */
import { Environment } from '@marcbachmann/cel-js';

/** A compiled `when` condition; returns whatever the expression yields. */
export type Condition = (context: Record<string, unknown>) => unknown;

export type CompiledCondition = { ok: true; condition: Condition } | { ok: false; message: string };

// Declared variables (instead of unlisted-are-dyn) so a typo such as
// `parms.amount` is a 422 at write time, not a silent fail-closed at runtime.
// `installation` is dyn because it is null for directives without one.
const environment = new Environment()
  .registerVariable('directive', 'map')
  .registerVariable('params', 'map')
  .registerVariable('actor', 'map')
  .registerVariable('installation', 'dyn')
  .registerVariable('org', 'map')
  .registerVariable('usage', 'map');

// The stored policy is recompiled for every directive; parsing dominates that
// cost, and an expression's compiled form depends only on its text. Bounded
// so a tenant rewriting its policy in a loop cannot grow memory without limit.
const CACHE_LIMIT = 1000;
const cache = new Map<string, CompiledCondition>();

/** Parses and type-checks a `when` expression; errors carry their position. */
export function compileCondition(expression: string): CompiledCondition {
  const cached = cache.get(expression);
  if (cached) {
    // Re-insert so eviction drops the least recently used entry.
    cache.delete(expression);
    cache.set(expression, cached);
    return cached;
  }
  const compiled = compileUncached(expression);
  if (cache.size >= CACHE_LIMIT) {
    const oldest = cache.keys().next();
    if (!oldest.done) cache.delete(oldest.value);
  }
  cache.set(expression, compiled);
  return compiled;
}

/** Test hook: the number of cached expressions. */
export function conditionCacheSize(): number {
  return cache.size;
}

function compileUncached(expression: string): CompiledCondition {
  let program: ReturnType<Environment['parse']>;
  try {
    program = environment.parse(expression);
  } catch (error) {
    return { ok: false, message: describeError(error, expression) };
  }
  const checked = program.check();
  if (!checked.valid) return { ok: false, message: describeError(checked.error, expression) };
  // `dyn` (e.g. `params.flag`) can only be judged at runtime; anything else
  // statically non-boolean can never match and is surely a mistake.
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return {
      ok: false,
      message: `when must be a boolean expression, but it has type ${checked.type}${position(expression, 0)}`,
    };
  }
  return { ok: true, condition: (context) => program(context) };
}

/** `<message> at line L, column C (offset O)` — line and column 1-based. */
function describeError(error: unknown, expression: string): string {
  const details = error as { summary?: unknown; message?: unknown; range?: { start?: unknown } } | undefined;
  const summary =
    typeof details?.summary === 'string'
      ? details.summary
      : typeof details?.message === 'string'
        ? details.message.split('\n')[0]
        : 'invalid expression';
  const start = typeof details?.range?.start === 'number' ? details.range.start : 0;
  return `${summary}${position(expression, start)}`;
}

function position(expression: string, offset: number): string {
  const clamped = Math.max(0, Math.min(offset, expression.length));
  const before = expression.slice(0, clamped);
  const line = before.split('\n').length;
  const column = clamped - (before.lastIndexOf('\n') + 1) + 1;
  return ` at line ${line}, column ${column} (offset ${clamped})`;
}

/** The runtime failure of a condition, short and safe to store in a decision. */
export function describeRuntimeError(error: unknown): string {
  const summary = (error as { summary?: unknown } | undefined)?.summary;
  return typeof summary === 'string' ? summary : 'evaluation failed';
}

/**
 * JSON → CEL. The library reads JS numbers as double, so `params.n + 1`
 * would fail (`double + int`); CEL users expect a JSON integer to be an int.
 * Safe integers become bigint (int), other numbers stay double. Comparisons
 * across int and double work either way. Objects get a null prototype so a
 * `__proto__` key stays data.
 */
export function toCel(value: unknown): unknown {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map((item) => (item === undefined ? null : toCel(item)));
  if (value !== null && typeof value === 'object' && isPlainObject(value)) {
    const out = Object.create(null) as Record<string, unknown>;
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) out[key] = toCel(item);
    }
    return out;
  }
  return value;
}

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}
