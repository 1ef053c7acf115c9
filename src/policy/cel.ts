/**
 * The CEL side of policy: its variables, compiling `when` conditions through
 * the bounded engine (cel-program.ts), and the conversion of JSON inputs into
 * CEL values.
 */
import { compile, CelCompileError, type CelBudget } from './cel-program.ts';

/** A compiled `when` condition; returns whatever the expression yields. */
export type Condition = (context: Record<string, unknown>, budget?: CelBudget) => unknown;

export type CompiledCondition = { ok: true; condition: Condition } | { ok: false; message: string };

// Declared variables (instead of unlisted-are-dyn) so a typo such as
// `parms.amount` is a 422 at write time, not a silent fail-closed at runtime.
// `installation` is dyn because it is null for directives without one.
const VARIABLES = {
  directive: 'map',
  params: 'map',
  actor: 'map',
  installation: 'dyn',
  org: 'map',
  usage: 'map',
} as const;

/** Parses, bounds and type-checks a `when` expression; errors carry their position. */
export function compileCondition(expression: string): CompiledCondition {
  let program;
  try {
    program = compile(expression, { variables: VARIABLES });
  } catch (error) {
    if (error instanceof CelCompileError) return { ok: false, message: error.message };
    throw error;
  }
  // `dyn` (e.g. `params.flag`) can only be judged at runtime; anything else
  // statically non-boolean can never match and is surely a mistake.
  if (program.type !== 'bool' && program.type !== 'dyn') {
    return { ok: false, message: `when must be a boolean expression, but it has type ${program.type} at line 1, column 1 (offset 0)` };
  }
  // The program's own function: one compiled text is one condition, cached.
  return { ok: true, condition: program.evaluate };
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
