import type { Tracer } from '@opentelemetry/api';
import { EXECUTE_DIRECTIVE } from '../core/jobs.ts';
import type { Sql } from '../db/client.ts';
import type { JobSpec } from '../db/jobs.ts';
import type { ExecutorRegistry } from '../executors/registry.ts';
import type { VaultDeps } from '../secrets/vault.ts';
import type { EmitDeps } from '../signals/emit.ts';
import type { PackagePolicyLookup } from './package-policy.ts';
import type { PolicyCompiler } from './policy-store.ts';

/** What the directive verbs and tasks use. */
export interface DirectiveDeps {
  sql: Sql;
  emit: EmitDeps;
  executors: ExecutorRegistry;
  /** Compiles each org's policy, cached per org and version. */
  policies: PolicyCompiler;
  /** Where executors find credentials. */
  vault: VaultDeps;
  /** How long an approval may wait when the deciding rule names no TTL. */
  approvalTtlSeconds: number;
  /** Base delay of executor retries (doubled per attempt, with jitter). */
  retryBaseMs: number;
  onDecision?: (effect: string) => void;
  /** The default policy rules of the package whose installation proposes (set by the composition root). */
  packagePolicy?: PackagePolicyLookup;
  tracer?: Tracer;
  now?: () => Date;
}

export const nowOf = (deps: Pick<DirectiveDeps, 'now'>) => (deps.now ? deps.now() : new Date());

/**
 * The execute job of a directive; its job key keeps one pending per directive.
 * `attempt` numbers a retry: a directive executed without claims does not count its attempts itself.
 */
export function executeJob(orgId: string, directiveId: string, traceparent: string | null, runAt?: Date, attempt?: number): JobSpec {
  return {
    identifier: EXECUTE_DIRECTIVE,
    payload: { org_id: orgId, directive_id: directiveId, traceparent, ...(attempt ? { attempt } : {}) },
    job_key: `directive:${directiveId}`,
    ...(runAt ? { run_at: runAt.toISOString() } : {}),
  };
}
