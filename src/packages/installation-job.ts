/**
 * The `run_installation` task: one attempt of an install, upgrade or
 * uninstall. Its steps and its outcome signal commit in one transaction; when
 * a step fails, that transaction rolls back whole and a second one records
 * `installation.failed` with the steps and the error report, for an admin to
 * read and retry. Idempotent: a job that is not the installation's pending
 * (operation, version, attempt) — a repeat, a stale one — does nothing.
 */
import { DomainError } from '../core/errors.ts';
import type { RunInstallationPayload } from '../core/jobs.ts';
import type { Tenant } from '../core/tenant.ts';
import { addJobs, type JobSpec } from '../db/jobs.ts';
import { withTransaction } from '../db/transaction.ts';
import { RUN_INSTALLATION } from '../core/jobs.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';
import type { InstallationRow, InstallationStep, PendingOperation } from './installation-model.ts';
import { installationSubject } from './installation-model.ts';
import { findInstallation } from './installation-read.ts';
import { planSteps, runSteps, safeMessage, StepFailed, type InstallationDeps } from './installation-steps.ts';

/** The job of a pending operation; one pending job per installation. */
export function installationJob(tenant: Tenant, id: string, pending: PendingOperation, traceparent: string | null = null): JobSpec {
  return {
    identifier: RUN_INSTALLATION,
    payload: { org_id: tenant.id, installation_id: id, operation: pending.operation, version: pending.version, attempt: pending.attempt, traceparent },
    job_key: `installation:${id}:${pending.operation}:${pending.version}:${pending.attempt}`,
  };
}

const isThisJob = (row: InstallationRow | undefined, job: RunInstallationPayload): row is InstallationRow =>
  row?.pending?.operation === job.operation && row.pending.version === job.version && row.pending.attempt === job.attempt;

const OUTCOME = { install: 'installation.installed', upgrade: 'installation.upgraded', uninstall: 'installation.uninstalled' } as const;

export async function runInstallationJob(
  deps: InstallationDeps,
  { tenant, job, onUnexpected }: { tenant: Tenant; job: RunInstallationPayload; onUnexpected?: (error: unknown) => void },
): Promise<void> {
  const ctx: VerbContext = { tenant, actor: PLATFORM_ACTOR, source: 'system', traceparent: job.traceparent ?? null, installationId: job.installation_id };
  const report: InstallationStep[] = [];
  const ref = { installation_id: job.installation_id, version: job.version };
  const keyOf = (outcome: string) => `installation:${job.installation_id}:${job.operation}:${job.version}:${job.attempt}:${outcome}`;
  let current: InstallationRow | undefined;
  try {
    await withTransaction(deps.sql, undefined, async (tx) => {
      // Locked: a second worker holding the same job waits, then finds it done.
      const row = await findInstallation(tx.sql, tenant.schema, job.installation_id, { lock: true });
      if (!isThisJob(row, job)) return;
      current = row;
      const manifest = job.operation === 'uninstall' ? undefined : deps.registry.getVersion(row.package, job.version)?.manifest;
      if (job.operation !== 'uninstall' && !manifest) {
        report.push({ id: 'manifest', status: 'failed', detail: `${row.package}@${job.version} is not in the registry` });
        throw new StepFailed('manifest', new DomainError('not_found', `${row.package}@${job.version} is not in the registry`));
      }
      await runSteps(deps, tx, row, planSteps(deps, { ...ctx, tx }, job.operation, row, manifest!), report);
      const finished = { ...ref, package: row.package, attempt: job.attempt, steps: report };
      const common = { subject: installationSubject(row.id), dedupe_key: keyOf('done') };
      if (job.operation === 'upgrade') {
        await emitSystem(deps.emit, ctx, tx, { type: OUTCOME.upgrade, payload: { ...finished, from_version: row.version, config: row.pending?.config ?? row.config }, ...common });
      } else {
        await emitSystem(deps.emit, ctx, tx, { type: OUTCOME[job.operation], payload: finished, ...common });
      }
    });
  } catch (error) {
    if (!(error instanceof StepFailed) || !current) throw error;
    const cause = error.reason;
    if (!(cause instanceof DomainError)) onUnexpected?.(cause);
    const row = current;
    await withTransaction(deps.sql, undefined, async (tx) => {
      const again = await findInstallation(tx.sql, tenant.schema, job.installation_id, { lock: true });
      if (!isThisJob(again, job)) return;
      await emitSystem(deps.emit, ctx, tx, {
        type: 'installation.failed',
        subject: installationSubject(row.id),
        payload: {
          ...ref,
          package: row.package,
          attempt: job.attempt,
          steps: report,
          error: {
            operation: job.operation,
            version: job.version,
            attempt: job.attempt,
            // The upgrade's new config was not applied; its retry applies it.
            ...(job.operation === 'upgrade' && row.pending?.config ? { config: row.pending.config } : {}),
            step: error.step,
            code: cause instanceof DomainError ? cause.code : 'internal',
            message: safeMessage(cause),
          },
        },
        dedupe_key: keyOf('failed'),
      });
    });
  }
}

/** Enqueues the job of `row`'s pending operation, inside the caller's transaction. */
export async function enqueueInstallationJob(db: Parameters<typeof addJobs>[0], tenant: Tenant, row: { id: string; pending: PendingOperation }, traceparent?: string | null) {
  await addJobs(db, [installationJob(tenant, row.id, row.pending, traceparent ?? null)]);
}
