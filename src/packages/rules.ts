/**
 * Rule handlers: a manifest's `handlers` compiled, per installation, into the
 * same `Handler` shape the built-ins have, so the dispatcher and the runtime
 * serve them unchanged. A rule runs as `<installation id>.<rule id>`; its
 * outputs keep the runtime's derived keys from (signal, handler, local key),
 * the local key being `key`'s value or the rule id.
 *
 * CEL sees `signal`, `config` and `installation` (docs/packages.md). A CEL
 * error fails the execution naming the field, the expression and the
 * position; `when` failing at dispatch matches, so the run reports it.
 */
import { DomainError } from '../core/errors.ts';
import type { Handler, MatchInput } from '../handlers/registry.ts';
import { celBudget, CelBudgetExceeded, runtimeErrorAt } from '../policy/cel-program.ts';
import { toCel } from '../policy/cel.ts';
import type { Cursor, SignalRow } from '../signals/model.ts';
import { compileManifestCel, type CelProgram } from './cel.ts';
import { celToJson } from './cel-values.ts';
import type { HandlerRule, Manifest } from './manifest.ts';

/** What a rule handler knows of its installation. */
export interface RuleInstallation {
  id: string;
  package: string;
  version: string;
  config: Record<string, unknown>;
  /** Where its subscriptions start: where the installation went live by default, or a backfill position. */
  start: Cursor | 'now';
}

interface Expression {
  path: string;
  text: string;
  program: CelProgram;
}

function compiled(path: string, text: string): Expression {
  const result = compileManifestCel(text, 'handler');
  // The registry checked every manifest it serves; a failure here is a bug, not input.
  if (!result.ok) throw new Error(`${path}: ${result.message}`);
  return { path, text, program: result.program };
}

/** Evaluates under one budget for the run; any failure is the execution's, with where it happened. */
function evaluate(expression: Expression, variables: Record<string, unknown>, budget: ReturnType<typeof celBudget>): unknown {
  try {
    return expression.program(variables, budget);
  } catch (error) {
    if (error instanceof CelBudgetExceeded) throw error.at(expression.path);
    const { summary, line, column } = runtimeErrorAt(error, expression.text);
    throw new DomainError('cel_error', `a CEL expression failed: ${summary} at line ${line}, column ${column}`, [
      { path: expression.path, message: expression.text },
    ]);
  }
}

function requireString(expression: Expression, value: unknown): string {
  if (typeof value === 'string' && value.length > 0) return value;
  throw new DomainError('cel_error', `a CEL expression must give a non-empty string, not ${value === null ? 'null' : typeof value}`, [
    { path: expression.path, message: expression.text },
  ]);
}

export function signalVariable(signal: Partial<SignalRow> & MatchInput) {
  return toCel({
    id: signal.id ?? null,
    type: signal.type,
    subject: signal.subject,
    payload: signal.payload,
    actor: signal.actor,
    source: signal.source,
    occurred_at: signal.occurred_at ?? null,
    correlation_id: signal.correlation_id,
    causation_id: signal.causation_id,
    installation_id: signal.installation_id ?? null,
  });
}

function ruleHandler(installation: RuleInstallation, manifest: Manifest, rule: HandlerRule, index: number): Handler {
  const at = `handlers.${index}`;
  const when = rule.when ? compiled(`${at}.when`, rule.when) : undefined;
  const output = rule.propose ?? rule.emit!;
  const kind = rule.propose ? 'propose' : 'emit';
  const fields = Object.entries(rule.propose ? rule.propose.params : rule.emit!.payload).map(([name, text]) => ({
    name,
    expression: compiled(`${at}.${kind}.${rule.propose ? 'params' : 'payload'}.${name}`, text),
  }));
  const key = output.key ? compiled(`${at}.${kind}.key`, output.key) : undefined;
  const subject = rule.emit?.subject ? compiled(`${at}.emit.subject`, rule.emit.subject) : undefined;
  const config = toCel(installation.config);
  const installationVariable = toCel({ id: installation.id, package: installation.package, version: installation.version });
  const variablesOf = (signal: Partial<SignalRow> & MatchInput) => ({ signal: signalVariable(signal), config, installation: installationVariable });

  return {
    id: `${installation.id}.${rule.id}`,
    on: rule.on,
    ordered: rule.ordered,
    start: installation.start,
    installationId: installation.id,
    scopes: manifest.scopes,
    ...(when
      ? {
          condition(signal) {
            try {
              return evaluate(when, variablesOf(signal), celBudget()) !== false;
            } catch {
              // Matched (as is a non-boolean), so the run fails visibly with the error rather than the signal passing silently.
              return true;
            }
          },
        }
      : {}),
    handle(signal, tools) {
      const budget = celBudget();
      const variables = variablesOf(signal);
      if (when) {
        const decided = evaluate(when, variables, budget);
        if (decided !== true && decided !== false) {
          throw new DomainError('cel_error', `a condition must give a boolean, not ${typeof decided}`, [{ path: when.path, message: when.text }]);
        }
        if (!decided) return;
      }
      const values: Record<string, unknown> = {};
      for (const { name, expression } of fields) {
        const value = celToJson(evaluate(expression, variables, budget), expression.path);
        if (value !== null && value !== undefined) values[name] = value;
      }
      const localKey = key ? requireString(key, evaluate(key, variables, budget)) : rule.id;
      if (rule.propose) {
        tools.propose({ kind: rule.propose.kind, params: values, key: localKey });
        return;
      }
      const derivedSubject = subject ? evaluate(subject, variables, budget) : signal.subject;
      tools.emit({
        type: rule.emit!.type,
        subject: typeof derivedSubject === 'string' ? derivedSubject : null,
        payload: values,
        key: localKey,
      });
    },
  };
}

/** The rule handlers of one installation of `manifest`. */
export function ruleHandlers(installation: RuleInstallation, manifest: Manifest): Handler[] {
  return manifest.handlers.map((rule, index) => ruleHandler(installation, manifest, rule, index));
}
