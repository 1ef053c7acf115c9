/**
 * Directives for the executor suites: proposed as an operator would through
 * the API, waited on until they finish, their execution's signals read back,
 * and requests built as the core builds them for calling an executor
 * directly.
 */
import { expect } from 'vitest';
import type { Actor } from '../../src/signals/actor.ts';
import { executionIdOfDirective } from '../../src/directives/execute.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective, type Directive } from '../../src/directives/store.ts';
import type { ExecuteRequest } from '../../src/executors/registry.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { waitFor, type TestApp } from './harness.ts';

/** Who proposes: `actor`, in `tenant`, through the API. */
export interface Proposer {
  tenant: Tenant;
  actor: Actor;
}

export interface Proposal {
  kind: string;
  params: Record<string, unknown>;
  idempotency_key?: string;
}

/** Proposes `input` as `actor` in `tenant`, whatever the policy decides. */
export async function proposeAs(t: TestApp, { tenant, actor }: Proposer, input: Proposal): Promise<Directive> {
  const { directive } = await proposeDirective(t.app.deps.bus.directives, { ctx: { tenant, actor, source: 'api' }, input });
  return directive;
}

/** Proposes `input` and expects the policy to approve it at once. */
export async function proposeApproved(t: TestApp, by: Proposer, input: Proposal): Promise<Directive> {
  const directive = await proposeAs(t, by, input);
  expect(directive.status).toBe('approved');
  return directive;
}

/** Waits until the directive has succeeded or failed, and returns it then. */
export function finishedDirective(t: TestApp, tenant: Tenant, id: string, timeoutMs = 20_000): Promise<Directive> {
  return waitFor(async () => {
    const row = await getDirective(t.app.deps.sql, tenant, id);
    return row.status === 'succeeded' || row.status === 'failed' ? row : undefined;
  }, timeoutMs, `directive ${id} to finish`);
}

/** The payloads of the directive's execution signals of `type` (`execution.failed`, say), attempt by attempt. */
export async function executionSignals<T>(t: TestApp, tenant: Tenant, type: string, directiveId: string): Promise<T[]> {
  const sql = t.app.deps.sql;
  const rows = await sql<{ payload: T }[]>`
    select payload from ${sql(`${tenant.schema}.signals`)}
     where type = ${type} and payload->>'execution_id' = ${executionIdOfDirective(directiveId)}
     order by (payload->>'attempt')::int`;
  return rows.map((row) => row.payload);
}

/**
 * A first attempt's request as the execute job builds it, for calling an
 * executor directly: `credentials.get` answers from `secrets`; any other
 * field can be given, `credentials` included.
 */
export function directRequest<P>({
  secrets = {},
  ...request
}: Pick<ExecuteRequest<P>, 'directiveId' | 'kind' | 'params' | 'idempotencyKey' | 'orgId'> &
  Partial<ExecuteRequest<P>> & { secrets?: Record<string, string | undefined> }): ExecuteRequest<P> {
  return {
    attempt: 1,
    firstAttemptAt: new Date(),
    priorOutcomeUnknown: false,
    installationId: null,
    credentials: { get: async (name) => (Object.hasOwn(secrets, name) ? secrets[name] : undefined) },
    ...request,
  };
}
