/**
 * The executor contract and registry: the only code that causes side effects.
 * An executor serves directive kinds, validates their params at proposal,
 * estimates their cost for the budget guard, and says whether its provider
 * honours idempotency keys — which decides what happens after a crash with
 * an unknown outcome.
 */
import type { z } from 'zod';
import { DomainError } from '../core/errors.ts';

export interface ExecuteRequest<Params> {
  directiveId: string;
  kind: string;
  params: Params;
  /** Derived from the directive id: the same on every attempt. */
  idempotencyKey: string;
  attempt: number;
  installationId: string | null;
  orgId: string;
}

export type ExecuteResult =
  | { outcome: 'succeeded'; result: unknown; costUsd?: number; usage?: { tokens_in?: number; tokens_out?: number } }
  | { outcome: 'retryable'; error: { code: string; message: string }; retryAfterMs?: number }
  | { outcome: 'permanent'; error: { code: string; message: string } }
  | { outcome: 'needs_reauthorization'; error: { code: string; message: string } };

export interface Executor<Params = unknown> {
  /** Kinds it serves: exact names. */
  kinds: readonly string[];
  params: z.ZodType<Params>;
  estimateCostUsd(kind: string, params: Params): number;
  /** True when repeating a call with the same idempotency key cannot repeat the effect. */
  honorsIdempotencyKey: boolean;
  /** Attempts before a retryable failure becomes final. */
  maxAttempts?: number;
  execute(request: ExecuteRequest<Params>): Promise<ExecuteResult>;
}

export interface ExecutorRegistry {
  kinds(): string[];
  /** The executor of `kind`; a 422 when none serves it. */
  require(kind: string): Executor;
  /** Validates params for `kind`: a 422 naming the bad fields. */
  parseParams(kind: string, params: unknown): unknown;
}

export function createExecutorRegistry(executors: readonly Executor<any>[]): ExecutorRegistry {
  const byKind = new Map<string, Executor>();
  for (const executor of executors) {
    for (const kind of executor.kinds) {
      if (byKind.has(kind)) throw new Error(`two executors serve ${kind}`);
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
      const parsed = require(kind).params.safeParse(params);
      if (parsed.success) return parsed.data;
      throw new DomainError(
        'validation_failed',
        `params are not valid for ${kind}`,
        parsed.error.issues.map((issue) => ({ path: ['params', ...issue.path.map(String)].join('.'), message: issue.message })),
      );
    },
  };
}
