/**
 * The execute job of a directive: the only path from an approved directive to
 * its executor. A claimed attempt has two transactions around the executor
 * call. The first claims the attempt (`directive.executing`,
 * `execution.started`) under the row lock; the second records the outcome.
 * Finding an attempt claimed but never finished means a worker died mid-call
 * with the outcome unknown: an executor whose provider honours idempotency
 * keys is simply called again with the same key (or asked to look its effect
 * up first); any other directive fails as `needs_reconcile` rather than risk
 * doing it twice.
 *
 * An executor whose provider deduplicates by the directive id for good
 * (`claimBeforeCall: false`) is called on a read of the directive, without a
 * claim: dying mid-call can only cause the same call again, so the attempt is
 * recorded once, with its outcome. Such a directive takes the claimed path
 * whenever there is more to decide — its endpoint's circuit is not closed, or
 * an earlier attempt was claimed. Under load the reads, claims and outcomes
 * of concurrent jobs share statements and transactions (group commit).
 *
 * A worker bounds its provider calls in flight (`callSlots`), not its
 * executions: an execution holds a slot from its claim (or, unclaimed, from
 * its call) until the call returns, and records its outcome without one. So
 * recording never holds back calls, and more executions waiting to record
 * make larger, cheaper groups. A claim waits for its slot first, so a
 * worker dying in that wait leaves no attempt with an unknown outcome.
 */
import { deferJobs } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import type { ExecuteResult } from '../executors/registry.ts';
import { circuitGate, circuitKeyOf, circuitsNotClosed } from './circuit.ts';
import { decideClaim } from './claim.ts';
import { createGroupRunner, type GroupRunner } from '../core/group-runner.ts';
import { credentialsFor, CredentialUnreadableError } from './credentials.ts';
import type { ExecutionStarted } from '../executions/model.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { inSpan } from '../telemetry/tracing.ts';
import type { Tenant } from '../core/tenant.ts';
import { executeJob, nowOf, type DirectiveDeps } from './deps.ts';
import { executionIdOfDirective, recordOutcomes, type Outcome } from './outcomes.ts';
import { DIRECTIVE_SELECT, type Directive } from './store.ts';
import { emitSystem, type SystemSignal } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';


export { executionIdOfDirective } from './outcomes.ts';

/** What a read of the directive decides: to skip it, to claim it first, or to call without a claim. */
type Start =
  | { kind: 'skip' }
  | { kind: 'claim' }
  | { kind: 'unclaimed'; directive: Directive; attempt: number };

type Claim =
  | { kind: 'skip' }
  | { kind: 'deferred' }
  | { kind: 'run'; directive: Directive; attempt: number; startedAt: Date; firstAttemptAt: Date; priorOutcomeUnknown: boolean }
  | { kind: 'unrecoverable'; directive: Directive; message: string };

const NEEDS_RECONCILE = 'needs_reconcile';

interface ExecuteRequestRef {
  tenant: Tenant;
  directiveId: string;
  traceparent: string | null;
  /** The attempt its job makes: a directive executed without claims counts its attempts by its retry jobs. */
  attempt?: number | undefined;
  /** Its job was released from a worker that died holding it: it may have run there, uncounted. */
  released?: number | undefined;
}

/**
 * Reads, claims and outcomes of one tenant's executions are group-committed:
 * under load, the directives a worker runs at once share one read, one
 * claiming and one recording transaction. Only signals of one trace share a
 * group, so each keeps its traceparent.
 */
interface Groups {
  starts: GroupRunner<ExecuteRequestRef, Start>;
  claims: GroupRunner<ExecuteRequestRef, Claim>;
  outcomes: GroupRunner<{ ctx: VerbContext; outcome: Outcome }, void>;
}
const groupsByDeps = new WeakMap<DirectiveDeps, Groups>();

function groupsOf(deps: DirectiveDeps): Groups {
  let groups = groupsByDeps.get(deps);
  if (!groups) {
    groups = {
      starts: createGroupRunner((_key, requests) => startGroup(deps, requests)),
      claims: createGroupRunner((_key, requests) => claimGroup(deps, requests)),
      outcomes: createGroupRunner(async (_key, items) => {
        await recordOutcomes(deps, items[0]!.ctx, items.map((item) => item.outcome));
        return items.map(() => undefined);
      }),
    };
    groupsByDeps.set(deps, groups);
  }
  return groups;
}

const groupKey = (tenant: Tenant, traceparent: string | null | undefined) => `${tenant.schema} ${traceparent ?? ''}`;

/** Runs `work` once a provider-call slot is free (a `p-limit` limiter); without slots, at once. */
export type CallSlots = <T>(work: () => Promise<T>) => Promise<T>;

/**
 * One execute job: read the directive; in a call slot, claim its attempt
 * unless it may go unclaimed, and call its executor; then, out of the slot,
 * record the outcome.
 */
export async function executeDirective(
  deps: DirectiveDeps,
  request: ExecuteRequestRef,
  callSlots: CallSlots = (work) => work(),
): Promise<void> {
  const { tenant, traceparent } = request;
  const ctx: VerbContext = { tenant, actor: PLATFORM_ACTOR, source: 'system', traceparent };
  const groups = groupsOf(deps);
  const key = groupKey(tenant, traceparent);
  const start = await groups.starts.run(key, request);
  if (start.kind === 'skip') return;
  const outcome = await callSlots(async (): Promise<Outcome | null> => {
    const claim: Claim = start.kind === 'claim' ? await groups.claims.run(key, request) : unclaimedRun(deps, start);
    if (claim.kind === 'skip' || claim.kind === 'deferred') return null;
    if (claim.kind === 'unrecoverable') {
      const result: ExecuteResult = { outcome: 'permanent', error: { code: NEEDS_RECONCILE, message: claim.message } };
      return { directive: claim.directive, attempt: claim.directive.attempts, startedAt: nowOf(deps), result, called: false };
    }
    return { directive: claim.directive, attempt: claim.attempt, startedAt: claim.startedAt, result: await call(deps, request, claim), called: true };
  });
  if (outcome) await groups.outcomes.run(key, { ctx, outcome });
}

/** An unclaimed attempt starts when its call slot is free, not when its directive was read. */
function unclaimedRun(deps: DirectiveDeps, { directive, attempt }: Extract<Start, { kind: 'unclaimed' }>): Claim {
  const startedAt = nowOf(deps);
  return { kind: 'run', directive, attempt, startedAt, firstAttemptAt: startedAt, priorOutcomeUnknown: false };
}

async function call(deps: DirectiveDeps, { tenant, directiveId }: ExecuteRequestRef, claim: Extract<Claim, { kind: 'run' }>): Promise<ExecuteResult> {
  const executor = deps.executors.require(claim.directive.kind);
  try {
    const request = {
      directiveId,
      kind: claim.directive.kind,
      params: claim.directive.params,
      idempotencyKey: directiveId,
      attempt: claim.attempt,
      firstAttemptAt: claim.firstAttemptAt,
      priorOutcomeUnknown: claim.priorOutcomeUnknown,
      installationId: claim.directive.installation_id,
      orgId: tenant.id,
      credentials: credentialsFor(deps, tenant, claim.directive.installation_id),
    };
    return deps.tracer
      ? await inSpan(deps.tracer, `executor ${claim.directive.kind}`, { attributes: { 'signalbus.directive': directiveId, 'signalbus.attempt': claim.attempt } }, async (span) => {
          const outcome = await executor.execute(request);
          span.setAttribute('signalbus.outcome', outcome.outcome);
          return outcome;
        })
      : await executor.execute(request);
  } catch (error) {
    // An executor should return failures; a throw is a bug or an unexpected fault, retried.
    return error instanceof CredentialUnreadableError
      ? { outcome: 'permanent', error: { code: 'credential_unreadable', message: error.message } }
      : { outcome: 'retryable', error: { code: 'executor_error', message: error instanceof Error ? error.message.slice(0, 500) : 'executor threw' } };
  }
}

/**
 * Starts the requested executions on one read, without a lock: those that
 * may call without a claim run; the rest are left to `claimGroup`. A
 * directive that is neither approved nor executing is skipped here already.
 */
async function startGroup(deps: DirectiveDeps, requests: ExecuteRequestRef[]): Promise<Start[]> {
  const { tenant } = requests[0]!;
  const ids = [...new Set(requests.map((request) => request.directiveId))];
  // Both reads at once: which circuits are not closed need not wait for the directives' endpoints.
  const [read, notClosed] = await Promise.all([
    deps.sql<Directive[]>`
      select ${deps.sql.unsafe(DIRECTIVE_SELECT)} from ${deps.sql(`${tenant.schema}.directives`)} where id = any(${ids}::text[])`,
    circuitsNotClosed(deps.sql, tenant),
  ]);
  const byId = new Map(read.map((directive) => [directive.id, directive]));
  /** The directives that may be called without a claim. */
  const unclaimed = new Set<string>();
  for (const directive of read) {
    if (directive.status !== 'approved') continue;
    const executor = deps.executors.require(directive.kind);
    if (executor.claimBeforeCall !== false) continue;
    // Only a closed circuit lets a call go without a claim: opening, probing and deferring are decided under its lock.
    const endpoint = circuitKeyOf(executor, directive);
    if (endpoint === null || !notClosed.has(endpoint)) unclaimed.add(directive.id);
  }

  const seen = new Set<string>();
  return requests.map((request): Start => {
    const directive = byId.get(request.directiveId);
    if (!directive || (directive.status !== 'approved' && directive.status !== 'executing')) return { kind: 'skip' };
    // After a worker died holding its job, the attempt is claimed, so counted:
    // a directive that stops its worker every time meets its attempt limit.
    if (!unclaimed.has(directive.id) || request.released) return { kind: 'claim' };
    // A second job of one directive in the same group: the first one runs it.
    if (seen.has(directive.id)) return { kind: 'skip' };
    seen.add(directive.id);
    // A run its worker died in is not counted: nothing recorded it, and a
    // job fetched by a dying worker need not have started. Its job comes
    // back marked released, and then takes the claimed path.
    const attempt = Math.max(request.attempt ?? 1, directive.attempts + 1);
    return { kind: 'unclaimed', directive, attempt };
  });
}

/**
 * Claims the next attempt of each requested directive in one transaction,
 * under their row locks (taken in id order): `directive.executing` and
 * `execution.started` for those that run, a later job for those whose
 * endpoint's circuit is open, a verdict for those whose last attempt's
 * outcome cannot be known safely.
 */
async function claimGroup(deps: DirectiveDeps, requests: ExecuteRequestRef[]): Promise<Claim[]> {
  const { tenant, traceparent } = requests[0]!;
  const ctx: VerbContext = { tenant, actor: PLATFORM_ACTOR, source: 'system', traceparent };
  return withTransaction(deps.sql, undefined, async (tx) => {
    const ids = [...new Set(requests.map((request) => request.directiveId))];
    const locked = await tx.sql<Directive[]>`
      select ${tx.sql.unsafe(DIRECTIVE_SELECT)} from ${tx.sql(`${tenant.schema}.directives`)}
       where id = any(${ids}::text[]) order by id for update`;
    const byId = new Map(locked.map((directive) => [directive.id, directive]));
    const resumed = locked.filter((directive) => directive.status === 'executing').map((directive) => executionIdOfDirective(directive.id));
    const executions = resumed.length === 0
      ? []
      : await tx.sql<{ id: string; status: string; attempts: number; started_at: Date | null }[]>`
          select id, status, attempts, started_at from ${tx.sql(`${tenant.schema}.executions`)} where id = any(${resumed}::text[])`;
    const executionById = new Map(executions.map((execution) => [execution.id, execution]));
    const endpoints = new Map(locked.map((directive) => [directive.id, circuitKeyOf(deps.executors.require(directive.kind), directive)]));
    const circuits = await circuitGate(tx, tenant, [...endpoints.values()].filter((endpoint) => endpoint !== null));

    const signals: SystemSignal[] = [];
    const deferred: ReturnType<typeof executeJob>[] = [];
    const seen = new Set<string>();
    const startedAt = nowOf(deps);
    const claims = requests.map((request): Claim => {
      const directive = byId.get(request.directiveId);
      // A second job of one directive in the same group: the first one runs it.
      if (seen.has(request.directiveId)) return { kind: 'skip' };
      seen.add(request.directiveId);
      if (!directive || (directive.status !== 'approved' && directive.status !== 'executing')) return { kind: 'skip' };
      const executor = deps.executors.require(directive.kind);
      const executionId = executionIdOfDirective(directive.id);
      const decision = decideClaim({ directive, execution: executionById.get(executionId), executor }, startedAt);
      if (decision.kind === 'skip') return decision;
      if (decision.kind === 'unrecoverable') return { ...decision, directive };
      const { firstAttemptAt, priorOutcomeUnknown } = decision;
      const endpoint = endpoints.get(directive.id);
      if (endpoint) {
        const admission = circuits.admit({ endpoint, directiveId: directive.id, policy: executor.circuit!, now: startedAt });
        if (admission.probing) signals.push(admission.probing);
        if (!admission.admitted) {
          // The endpoint's circuit is open: try again once it may probe, without spending an attempt.
          deferred.push(executeJob(tenant.id, directive.id, request.traceparent, admission.until));
          return { kind: 'deferred' };
        }
      }
      const attempt = directive.attempts + 1;
      const subject = `directive:${directive.id}`;
      const started: ExecutionStarted = {
        execution_id: executionId, handler: `executor:${directive.kind}`, signal_id: null, directive_id: directive.id, attempt,
        started_at: startedAt.toISOString(),
      };
      signals.push(
        {
          type: 'directive.executing',
          subject,
          payload: { directive_id: directive.id, execution_id: executionId, attempt },
          dedupe_key: `directive:${directive.id}:executing:${attempt}`,
          correlation_id: directive.correlation_id,
        },
        {
          type: 'execution.started',
          subject,
          payload: started,
          dedupe_key: `execution:${executionId}:started:${attempt}`,
          correlation_id: directive.correlation_id,
        },
      );
      return { kind: 'run', directive, attempt, startedAt, firstAttemptAt, priorOutcomeUnknown };
    });
    if (signals.length > 0) await emitSystem(deps.emit, ctx, tx, signals);
    deferJobs(tx, deferred);
    return claims;
  });
}
