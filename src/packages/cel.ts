/**
 * The one place a manifest's CEL is compiled. Each place an expression can
 * stand is a `CelScope`: it fixes the variables the expression sees at run
 * time and the types its result may have, so a typo (`signal.paylod`) or a
 * wrong type fails `registry check`, not an installation's first signal.
 */
import { Environment } from '@marcbachmann/cel-js';

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

const environments = new Map<CelScope, Environment>();

function environmentOf(scope: CelScope): Environment {
  let environment = environments.get(scope);
  if (!environment) {
    environment = new Environment();
    for (const [name, type] of Object.entries(SCOPE_VARIABLES[scope])) {
      if (typeof type === 'string') environment.registerVariable(name, type);
      else environment.registerVariable(name, { schema: Object.fromEntries(type.fields.map((field) => [field, 'dyn'])) });
    }
    environments.set(scope, environment);
  }
  return environment;
}

export type CelProgram = (variables: Record<string, unknown>) => unknown;

export type CompiledCel =
  | { ok: true; program: CelProgram; type: string }
  | { ok: false; message: string; offset: number; line: number; column: number };

/**
 * Parses and type-checks `expression` in `scope`; a failure says what and
 * where (`… at line L, column C`), 1-based.
 */
export function compileManifestCel(expression: string, scope: CelScope, result: CelResult = 'any'): CompiledCel {
  let program: ReturnType<Environment['parse']>;
  try {
    program = environmentOf(scope).parse(expression);
  } catch (error) {
    return failure(expression, error);
  }
  const checked = program.check();
  if (!checked.valid) return failure(expression, checked.error);
  const type = checked.type ?? 'dyn';
  if (result !== 'any' && type !== 'dyn' && !ACCEPTED[result].includes(type)) {
    return failure(expression, { summary: `must evaluate to ${ACCEPTED[result].join(' or ')}, not ${type}` });
  }
  return { ok: true, program: (variables) => program(variables), type };
}

function failure(expression: string, error: unknown): CompiledCel & { ok: false } {
  const details = error as { summary?: unknown; message?: unknown; range?: { start?: unknown } } | undefined;
  const summary =
    typeof details?.summary === 'string'
      ? details.summary
      : typeof details?.message === 'string'
        ? details.message.split('\n')[0]!
        : 'invalid expression';
  const offset = Math.max(0, Math.min(typeof details?.range?.start === 'number' ? details.range.start : 0, expression.length));
  const before = expression.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  return { ok: false, message: `${summary} at line ${line}, column ${column}`, offset, line, column };
}
