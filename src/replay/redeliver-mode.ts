/**
 * The `redeliver` mode (and its `dry_run`): src/handlers/redeliver.ts run
 * as a replay, one page per checkpoint. Each page's writes commit run by
 * run under their deterministic keys, so the checkpoint goes outside them:
 * a run resumed after a crash re-reads at most one page, whose outputs then
 * resolve as deduplicated, and the totals come out the same. The job holds
 * `rate_per_s` at each checkpoint; pages are sized to about a second of it.
 */
import { DomainError } from '../core/errors.ts';
import { parseTypeFilter } from '../signals/model.ts';
import { planRedelivery, redeliverPage, type RedeliverInput, type RedeliveryPlan } from '../handlers/redeliver.ts';
import { emptyReport, mergeReports, NEW_ITEMS_LISTED, type RedeliverReport } from '../handlers/redeliver-report.ts';
import type { RuntimeDeps } from '../handlers/runtime.ts';
import type { ReplayMode, ReplayRun } from './modes.ts';
import type { ReplayRequest, ReplayRow } from './model.ts';

/** The plan and the counts so far; the listed outputs stay in the run's memory (a checkpoint is a signal). */
export interface RedeliverCheckpoint {
  plan: RedeliveryPlan;
  report: RedeliverReport;
}

export interface RedeliverModeDeps extends RuntimeDeps {
  /** Signals per page (and per checkpoint). */
  pageSize: number;
}

function inputOf(replay: Pick<ReplayRow, 'id' | 'request'>): RedeliverInput {
  const { selection, handlers, dry_run, new_directives, reason } = replay.request;
  return { selection, ...(handlers ? { handlers } : {}), dry_run, new_directives, reason: `replay ${replay.id}: ${reason}`.slice(0, 500) };
}

/** The report as a checkpoint carries it: counts and position, no lists. */
/**
 * The report as the completion signal carries it, within the org's payload
 * limit (a quarter of it left for the rest of the signal): the lists are
 * halved until it fits, and marked `truncated`; the counts stay exact.
 */
export function fittedReport<Report extends RedeliverReport>(report: Report, maxPayloadBytes: number): Report {
  const budget = Math.floor(maxPayloadBytes * 0.75);
  const size = (candidate: Report) => Buffer.byteLength(JSON.stringify(candidate));
  let fitted = report;
  for (let keep = NEW_ITEMS_LISTED; size(fitted) > budget && keep > 0; keep = Math.floor(keep / 2)) {
    const cut = <T>(items: T[] | undefined) => (items ? { items: items.slice(0, keep) } : undefined);
    const lists = { would_emit: cut(report.would_emit), would_propose: cut(report.would_propose), emitted: cut(report.emitted), proposed: cut(report.proposed) };
    fitted = { ...report, truncated: true, errors: report.errors.slice(0, keep) };
    for (const [name, list] of Object.entries(lists)) if (list) Object.assign(fitted, { [name]: list.items });
  }
  return fitted;
}

function countsOnly(report: RedeliverReport): RedeliverReport {
  const { would_emit: _we, would_propose: _wp, emitted: _e, proposed: _p, ...counts } = report;
  return { ...counts, ...(report.dry_run ? { would_emit: [], would_propose: [] } : { emitted: [], proposed: [] }), errors: [] };
}

export function createRedeliverMode(deps: RedeliverModeDeps): ReplayMode<RedeliverCheckpoint> {
  return {
    name: 'redeliver',
    plan(request: ReplayRequest) {
      if (request.projections) {
        throw new DomainError('validation_failed', 'redeliver folds no projections', [{ path: 'projections', message: 'only rebuild and as_of take projections' }]);
      }
      // A rule handler (`<installation id>.<rule>`) is the org's: the run checks it against the org's live set.
      const unknown = (request.handlers ?? []).filter((id) => !deps.handlers.builtins.get(id) && !id.startsWith('ins_'));
      if (unknown.length > 0) {
        throw new DomainError('validation_failed', `no handler ${unknown.join(', ')} is registered`, [{ path: 'handlers', message: `unknown handler ${unknown.join(', ')}` }]);
      }
      parseTypeFilter(request.selection.types?.join(','), 'selection.types');
      // Executing new directives is the org admin's call; holding them (or a dry run) is support's.
      const executes = request.new_directives === 'execute' && !request.dry_run;
      return { scope: request.handlers ?? ['*'], ...(executes ? { requires: 'org:admin' as const } : {}) };
    },
    async run(run: ReplayRun<RedeliverCheckpoint>) {
      const { replay, ctx } = run;
      const input = inputOf(replay);
      const rate = replay.request.rate_per_s;
      const limit = rate ? Math.max(1, Math.min(deps.pageSize, Math.ceil(rate))) : deps.pageSize;
      let plan: RedeliveryPlan;
      let report: RedeliverReport;
      if (run.checkpoint) {
        plan = run.checkpoint.plan;
        // What was listed before the resume is not in the checkpoint: the counts are exact, the lists partial.
        report = { ...run.checkpoint.report, truncated: true };
      } else {
        plan = await planRedelivery(deps, { ctx, input });
        report = emptyReport({ dry_run: replay.request.dry_run, new_directives: replay.request.new_directives, handlers: plan.handlers });
        await run.progress({ processed: 0, total: plan.total, checkpoint: { plan, report } });
      }
      for (;;) {
        const page = await redeliverPage(deps, { ctx, input, plan, after: report.position ?? plan.after, limit });
        report = mergeReports(report, page.report);
        await run.progress({ processed: report.processed, total: plan.total, checkpoint: { plan, report: countsOnly(report) } });
        if (page.done) return fittedReport({ ...report, selection: replay.request.selection, total: plan.total }, deps.emit.maxPayloadBytes);
      }
    },
  };
}
