/**
 * The executor contract and registry: the only code that causes side effects.
 * An executor serves directive kinds, validates their params at proposal,
 * estimates their cost for the budget guard, and says how its provider
 * deduplicates — which decides what happens after a crash with an unknown
 * outcome.
 */
import type { z } from 'zod';
import { DomainError } from '../core/errors.ts';

/** Credentials by conventional name: the installation's secret first, then the org's. */
export interface Credentials {
  get(name: string): Promise<string | undefined>;
}

export interface ExecuteRequest<Params> {
  directiveId: string;
  kind: string;
  params: Params;
  /** Derived from the directive id: the same on every attempt. */
  idempotencyKey: string;
  attempt: number;
  /** When the first attempt was claimed: providers' idempotency windows count from here. */
  firstAttemptAt: Date;
  /**
   * An earlier attempt was claimed and never recorded: a worker died during
   * the call, so the effect may already have happened.
   */
  priorOutcomeUnknown: boolean;
  installationId: string | null;
  orgId: string;
  credentials: Credentials;
}

/** A signal an executor asks to record with its result, in the same transaction. */
export interface ResultSignal {
  type: string;
  subject?: string | null;
  payload: Record<string, unknown>;
}

export interface ExecuteError {
  code: string;
  message: string;
}

export type ExecuteResult =
  | {
      outcome: 'succeeded';
      /** A redacted summary (provider ids, status): it is stored on `directive.succeeded`. */
      result: Record<string, unknown>;
      costUsd?: number;
      usage?: { tokens_in?: number; tokens_out?: number; model?: string };
      signals?: ResultSignal[];
    }
  | { outcome: 'retryable'; error: ExecuteError; retryAfterMs?: number }
  | { outcome: 'permanent'; error: ExecuteError }
  /** The provider refused the credential itself; `credential` names the secret to renew. */
  | { outcome: 'needs_reauthorization'; error: ExecuteError; credential: string };

/** A breaker per endpoint: open after consecutive failures, one trial call after the cool-down. */
export interface CircuitPolicy<Params> {
  key(kind: string, params: Params): string;
  failureThreshold: number;
  cooldownMs: number;
}

export interface Executor<Params = any> {
  /** Kinds it serves: exact names. */
  kinds: readonly string[];
  /** One schema for every kind, or one per kind. Checked at proposal. */
  params: z.ZodType<Params> | Readonly<Record<string, z.ZodType<Params>>>;
  estimateCostUsd(kind: string, params: Params): number;
  /** True when repeating a call with the same idempotency key cannot repeat the effect. */
  honorsIdempotencyKey: boolean;
  /**
   * True when `execute`, told `priorOutcomeUnknown`, first looks the earlier
   * effect up at the provider and records it instead of repeating it.
   */
  looksUpPriorEffect?: boolean;
  /**
   * False when a call needs no durable claim before it: the provider
   * deduplicates by the directive id for good, so a worker dying mid-call
   * only means the same call again. The attempt is then recorded once, with
   * its outcome — one transaction where a claimed attempt takes two — and an
   * approved directive of its kind can no longer be cancelled, as its call
   * may be under way unseen. Requires `honorsIdempotencyKey` and no
   * `idempotencyWindowMs`. Default true.
   */
  claimBeforeCall?: boolean;
  /** How long the provider remembers an idempotency key; later attempts fail as `needs_reconcile`. */
  idempotencyWindowMs?: number;
  /** Attempts before a retryable failure becomes final. */
  maxAttempts?: number;
  /** The addresses a directive would reach, for the suppression guard. */
  recipients?(kind: string, params: Params): string[];
  circuit?: CircuitPolicy<Params>;
  execute(request: ExecuteRequest<Params>): Promise<ExecuteResult>;
}

export interface ExecutorRegistry {
  kinds(): string[];
  /** The executor of `kind`; a 422 when none serves it. */
  require(kind: string): Executor;
  /** Validates params for `kind`: a 422 naming the bad fields. */
  parseParams(kind: string, params: unknown): unknown;
}

const isSchema = (params: Executor['params']): params is z.ZodType => typeof (params as z.ZodType).safeParse === 'function';

export function schemaOf(executor: Executor, kind: string): z.ZodType {
  const { params } = executor;
  if (isSchema(params)) return params;
  const byKind = params as Readonly<Record<string, z.ZodType>>;
  const schema = Object.hasOwn(byKind, kind) ? byKind[kind] : undefined;
  if (!schema) throw new Error(`executor serving ${kind} declares no params schema for it`);
  return schema;
}

export function createExecutorRegistry(executors: readonly Executor<any>[]): ExecutorRegistry {
  const byKind = new Map<string, Executor>();
  for (const executor of executors) {
    for (const kind of executor.kinds) {
      if (byKind.has(kind)) throw new Error(`two executors serve ${kind}`);
      schemaOf(executor, kind);
      if (executor.claimBeforeCall === false && (!executor.honorsIdempotencyKey || executor.idempotencyWindowMs !== undefined)) {
        throw new Error(`${kind} calls without a claim, so its provider must deduplicate by idempotency key for good`);
      }
      byKind.set(kind, executor);
    }
  }
  const require = (kind: string) => {
    const executor = byKind.get(kind);
    if (!executor) {
      throw new DomainError('validation_failed', `no executor serves directive kind ${kind}`, [
        { path: 'kind', message: 'unknown directive kind' },
      ]);
    }
    return executor;
  };
  return {
    kinds: () => [...byKind.keys()].sort(),
    require,
    parseParams(kind, params) {
      const parsed = schemaOf(require(kind), kind).safeParse(params);
      if (parsed.success) return parsed.data;
      throw new DomainError(
        'validation_failed',
        `params are not valid for ${kind}`,
        parsed.error.issues.map((issue) => ({ path: ['params', ...issue.path.map(String)].join('.'), message: issue.message })),
      );
    },
  };
}
