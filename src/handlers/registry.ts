/**
 * The handler registry and its matcher. A handler subscribes to signal types
 * (exact, or `prefix.*`) with an optional CEL condition over the signal; the
 * dispatcher asks `matches` for every new signal of every subscription.
 * Built-in handlers are TypeScript; manifest rule handlers (packages) compile
 * to the same shape.
 */
import { DomainError } from '../core/errors.ts';
import { describeRuntimeError, toCel } from '../policy/cel.ts';
import { CelBudgetExceeded, CelCompileError, compile } from '../policy/cel-program.ts';
import type { Cursor, SignalRow } from '../signals/model.ts';

export interface HandlerTools {
  /** The attempt of this run, from 1. */
  attempt: number;
  /** Emits a derived signal; `key` makes it the same signal on every retry or redelivery. */
  emit(input: { type: string; subject?: string | null; payload: Record<string, unknown>; key: string }): void;
  /** Proposes a directive; `key` makes it the same directive on every retry or redelivery. */
  propose(input: { kind: string; params: Record<string, unknown>; key: string }): void;
}

export interface Handler {
  /** Stable id, e.g. `builtin.echo`; subscriptions and dedupe keys use it. */
  id: string;
  /** Signal types: exact names or `prefix.*`. */
  on: readonly string[];
  /** CEL over `signal` (type, subject, payload, actor, source, …); absent = always. */
  when?: string;
  /** A condition already compiled (rule handlers, whose CEL also sees config and installation); replaces `when`. */
  condition?: (signal: MatchInput) => boolean;
  /** The installation a rule handler belongs to: its outputs are that installation's. */
  installationId?: string;
  /** The directive kinds it may propose; absent = any (built-ins). */
  scopes?: readonly string[];
  /** Runs of one subject execute one at a time, in position order. */
  ordered?: boolean;
  /** Where a new subscription starts: at the present (default), the beginning of the log, or a position. */
  start?: 'now' | 'beginning' | Cursor;
  /** Attempts before a failing run is final (default 5). */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt, with jitter (default 1 s). */
  retryBaseMs?: number;
  handle(signal: SignalRow, tools: HandlerTools): Promise<void> | void;
}

export type MatchInput = Pick<SignalRow, 'type' | 'subject' | 'payload' | 'actor' | 'source' | 'correlation_id' | 'causation_id'> &
  Partial<Pick<SignalRow, 'id' | 'occurred_at' | 'installation_id'>>;

export interface RegisteredHandler extends Handler {
  /** Type and condition; a condition failing at runtime is a non-match (logged by the caller). */
  matches(signal: MatchInput): boolean;
  /** True when it has a condition: the dispatcher then fetches the signal's content, not just its type. */
  needsPayload: boolean;
}

export interface HandlerRegistry {
  list(): readonly RegisteredHandler[];
  get(id: string): RegisteredHandler | undefined;
}

/** Long enough for a rule handler: `<installation id>.<rule id>`. */
const HANDLER_ID = /^[a-z][a-z0-9_.-]{0,99}$/;
const TYPE_PATTERN = /^([a-z][a-z0-9_]*)(\.[a-z][a-z0-9_]*)*(\.\*)?$/;
const VARIABLES = { signal: 'map' } as const;

export function typeMatcher(patterns: readonly string[]): (type: string) => boolean {
  const exact = new Set(patterns.filter((pattern) => !pattern.endsWith('.*')));
  const prefixes = patterns.filter((pattern) => pattern.endsWith('.*')).map((pattern) => pattern.slice(0, -1));
  return (type) => exact.has(type) || prefixes.some((prefix) => type.startsWith(prefix));
}

/**
 * Compiles a handler condition; a bad expression is a 422 naming its position.
 * It runs under the CEL budget: past it, evaluating throws CelBudgetExceeded,
 * which carries the expression.
 */
export function compileCondition(expression: string, path = 'when'): (signal: MatchInput) => boolean {
  let program;
  try {
    program = compile(expression, { variables: VARIABLES });
  } catch (error) {
    if (!(error instanceof CelCompileError)) throw error;
    throw new DomainError('validation_failed', 'the condition is not valid CEL', [{ path, message: error.message }]);
  }
  return (signal) => {
    const value = program.evaluate({
      signal: toCel({
        type: signal.type,
        subject: signal.subject,
        payload: signal.payload,
        actor: signal.actor,
        source: signal.source,
        correlation_id: signal.correlation_id,
        causation_id: signal.causation_id,
      }),
    });
    if (typeof value !== 'boolean') throw new Error(`condition returned ${typeof value}, not a boolean`);
    return value;
  };
}

export function createHandlerRegistry(handlers: readonly Handler[], { onConditionError }: { onConditionError?: (handler: string, message: string) => void } = {}): HandlerRegistry {
  const byId = new Map<string, RegisteredHandler>();
  for (const handler of handlers) {
    if (!HANDLER_ID.test(handler.id)) throw new Error(`handler id ${JSON.stringify(handler.id)} must match ${HANDLER_ID}`);
    if (byId.has(handler.id)) throw new Error(`two handlers are named ${handler.id}`);
    const bad = handler.on.find((pattern) => !TYPE_PATTERN.test(pattern));
    if (bad !== undefined || handler.on.length === 0) throw new Error(`handler ${handler.id} subscribes to an invalid type ${JSON.stringify(bad)}`);
    const typeMatches = typeMatcher(handler.on);
    const condition = handler.condition ?? (handler.when ? compileCondition(handler.when) : undefined);
    byId.set(handler.id, {
      ...handler,
      needsPayload: condition !== undefined,
      matches(signal) {
        if (!typeMatches(signal.type)) return false;
        if (!condition) return true;
        try {
          return condition(signal);
        } catch (error) {
          // A spent budget is reported with the expression, so the log names what to fix.
          const message = error instanceof CelBudgetExceeded ? `${error.message}: ${error.expression}` : describeRuntimeError(error);
          onConditionError?.(handler.id, message);
          return false;
        }
      },
    });
  }
  const list = [...byId.values()];
  return { list: () => list, get: (id) => byId.get(id) };
}
