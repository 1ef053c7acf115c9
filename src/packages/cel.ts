/**
 * The one place a manifest's CEL is compiled. Each place an expression can
 * stand is a `CelScope`: it fixes the variables the expression sees at run
 * time and the types its result may have, so a typo (`signal.paylod`) or a
 * wrong type fails `registry check`, not an installation's first signal.
 * Compiling and running go through signalbus's bounded CEL
 * (src/policy/cel-program.ts): the same length, nesting and cost limits, a
 * budget per evaluation, and RE2 for `matches`.
 */
import { compile, CelCompileError, type CelBudget, type CelVariable } from '../policy/cel-program.ts';

export type CelScope = 'handler' | 'step' | 'projection' | 'webhook' | 'webhook-pubsub' | 'policy';

/** A variable whose fields are known: a misspelt field is a check-time error, each field is `dyn`. */
interface Fields {
  fields: readonly string[];
}
type Variable = 'map' | 'dyn' | Fields;

/** The signal as rule handlers and projections see it. */
export const SIGNAL_FIELDS = ['id', 'type', 'subject', 'payload', 'actor', 'source', 'occurred_at', 'correlation_id', 'causation_id', 'installation_id'];
/** The installation as handlers and install steps see it. */
export const INSTALLATION_FIELDS = ['id', 'package', 'version'];
const signal: Fields = { fields: SIGNAL_FIELDS };
const installation: Fields = { fields: INSTALLATION_FIELDS };

/**
 * The variables of each scope (docs/packages.md, "CEL variables"). `map` where
 * the value is always an object, `dyn` where it may be null. Known fields are
 * `dyn` rather than typed, so map literals can mix them with payload values.
 */
export const SCOPE_VARIABLES: Readonly<Record<CelScope, Readonly<Record<string, Variable>>>> = {
  handler: { signal, config: 'map', installation },
  step: { config: 'map', installation },
  // Projections are folds of the log alone, so a rebuild gives the same rows:
  // no config, which can change between the signal and the rebuild.
  projection: { signal, entity: 'dyn' },
  webhook: { body: 'dyn', headers: 'map', config: 'map' },
  'webhook-pubsub': { body: 'dyn', headers: 'map', config: 'map', data: 'dyn' },
  // The same variables as an org's own policy rules (src/policy/cel.ts).
  policy: { directive: 'map', params: 'map', actor: 'map', installation: 'dyn', org: 'map', usage: 'map' },
};

/** What a result may be: `dyn` always passes, as only the run time can tell. */
export type CelResult = 'bool' | 'string' | 'occurred_at' | 'any';

const ACCEPTED: Record<Exclude<CelResult, 'any'>, readonly string[]> = {
  bool: ['bool'],
  string: ['string'],
  occurred_at: ['int', 'string', 'google.protobuf.Timestamp'],
};

function variablesOf(scope: CelScope): Record<string, CelVariable> {
  return Object.fromEntries(
    Object.entries(SCOPE_VARIABLES[scope]).map(([name, type]) => [
      name,
      typeof type === 'string' ? type : { schema: Object.fromEntries(type.fields.map((field) => [field, 'dyn'])) },
    ]),
  );
}

/**
 * Runs under `budget` (a fresh one when absent); past it, throws
 * CelBudgetExceeded carrying the expression, for the run to fail with it.
 */
export type CelProgram = (variables: Record<string, unknown>, budget?: CelBudget) => unknown;

export type CompiledCel =
  | { ok: true; program: CelProgram; type: string }
  | { ok: false; message: string; offset: number; line: number; column: number };

/**
 * Parses and type-checks `expression` in `scope`; a failure says what and
 * where (`… at line L, column C`), 1-based.
 */
export function compileManifestCel(expression: string, scope: CelScope, result: CelResult = 'any'): CompiledCel {
  let program;
  try {
    program = compile(expression, { variables: variablesOf(scope) });
  } catch (error) {
    if (!(error instanceof CelCompileError)) throw error;
    return failure(error.summary, error.offset, error.line, error.column);
  }
  const { type } = program;
  if (result !== 'any' && type !== 'dyn' && !ACCEPTED[result].includes(type)) {
    return failure(`must evaluate to ${ACCEPTED[result].join(' or ')}, not ${type}`, 0, 1, 1);
  }
  return { ok: true, program: program.evaluate, type };
}

function failure(summary: string, offset: number, line: number, column: number): CompiledCel & { ok: false } {
  return { ok: false, message: `${summary} at line ${line}, column ${column}`, offset, line, column };
}
