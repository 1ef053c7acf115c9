/**
 * What a redelivery (or its dry run) reports: exact counts of runs and of
 * outputs, new vs deduplicated, and bounded lists of the outputs themselves
 * — every new one up to a cap, a sample of the deduplicated — so a report
 * stays small whatever the selection's length. Page reports add up, so a
 * resumed replay reports the same totals as an uninterrupted one.
 */
import type { Decision } from '../policy/model.ts';
import type { WrittenOutputs } from './outputs.ts';

/** New outputs listed per kind; past it only counted. */
export const NEW_ITEMS_LISTED = 1000;
/** Deduplicated outputs listed per kind, as a sample. */
export const DEDUPLICATED_ITEMS_LISTED = 50;
export const ERRORS_LISTED = 100;

export interface EmitItem {
  /** The signal the handler ran on. */
  cause: string;
  handler: string;
  type: string;
  subject: string | null;
  dedupe_key: string;
  new: boolean;
  /** The signal's id: the stored one's, or — in a dry run — absent for a new one (it was never kept). */
  id?: string;
}

export type DecisionSummary = Pick<Decision, 'effect' | 'rule' | 'reason'>;

export interface ProposeItem {
  cause: string;
  handler: string;
  kind: string;
  idempotency_key: string;
  new: boolean;
  id?: string;
  /** For a new directive: the decision it gets (a hold overrides an allow) and what the policy alone decides. */
  decision?: DecisionSummary;
  policy?: DecisionSummary;
}

export interface RunError {
  signal_id: string;
  handler: string;
  code: string;
  message: string;
}

export interface RedeliverCounts {
  /** Signals of the selection read. */
  processed: number;
  /** Handler runs: (signal × matching handler). */
  runs: number;
  failed: number;
  signals_new: number;
  signals_deduplicated: number;
  directives_new: number;
  directives_deduplicated: number;
  /** New directives by the decision they get: `require_approval` for held ones. */
  decisions: Record<string, number>;
}

export interface RedeliverReport extends RedeliverCounts {
  dry_run: boolean;
  new_directives: 'hold' | 'execute';
  handlers: string[];
  /** Dry run: what would be emitted and proposed. A real run lists the same under `emitted` and `proposed`. */
  would_emit?: EmitItem[];
  would_propose?: ProposeItem[];
  emitted?: EmitItem[];
  proposed?: ProposeItem[];
  errors: RunError[];
  /** True when more outputs or errors happened than the lists hold (the counts are exact). */
  truncated: boolean;
  cancelled: boolean;
  /** The last position processed: where a resumed run goes on. */
  position: string | null;
}

export function emptyReport({ dry_run, new_directives, handlers }: Pick<RedeliverReport, 'dry_run' | 'new_directives' | 'handlers'>): RedeliverReport {
  return {
    dry_run,
    new_directives,
    handlers,
    processed: 0,
    runs: 0,
    failed: 0,
    signals_new: 0,
    signals_deduplicated: 0,
    directives_new: 0,
    directives_deduplicated: 0,
    decisions: {},
    ...(dry_run ? { would_emit: [], would_propose: [] } : { emitted: [], proposed: [] }),
    errors: [],
    truncated: false,
    cancelled: false,
    position: null,
  };
}

const emitList = (report: RedeliverReport) => (report.dry_run ? report.would_emit! : report.emitted!);
const proposeList = (report: RedeliverReport) => (report.dry_run ? report.would_propose! : report.proposed!);

/** Appends `item` when it is within its kind's cap (`nth` of its kind, from 1); else marks the report truncated. */
function listed<T extends { new: boolean }>(report: RedeliverReport, list: T[], item: T, nth: number): void {
  if (nth <= (item.new ? NEW_ITEMS_LISTED : DEDUPLICATED_ITEMS_LISTED)) list.push(item);
  else report.truncated = true;
}

/** Appends `items` to `list` within the caps, counting what the list already holds. */
function listAll<T extends { new: boolean }>(report: RedeliverReport, list: T[], items: readonly T[]): void {
  let fresh = list.filter((entry) => entry.new).length;
  let seen = list.length - fresh;
  for (const item of items) listed(report, list, item, item.new ? ++fresh : ++seen);
}

const summary = ({ effect, rule, reason }: Decision): DecisionSummary => ({ effect, rule, reason });

/** Counts and lists one run's written (or, in a dry run, rolled-back) outputs. */
export function tallyRun(report: RedeliverReport, { cause, handler, written }: { cause: string; handler: string; written: WrittenOutputs }): void {
  for (const output of written.signals) {
    const nth = output.created ? ++report.signals_new : ++report.signals_deduplicated;
    const keepId = !report.dry_run || !output.created;
    listed(report, emitList(report), {
      cause,
      handler,
      type: output.type,
      subject: output.subject,
      dedupe_key: output.dedupe_key,
      new: output.created,
      ...(keepId ? { id: output.id } : {}),
    }, nth);
  }
  for (const output of written.directives) {
    const nth = output.created ? ++report.directives_new : ++report.directives_deduplicated;
    if (output.created) {
      const effect = output.decision?.effect ?? 'unknown';
      report.decisions[effect] = (report.decisions[effect] ?? 0) + 1;
    }
    const keepId = !report.dry_run || !output.created;
    listed(report, proposeList(report), {
      cause,
      handler,
      kind: output.kind,
      idempotency_key: output.idempotency_key,
      new: output.created,
      ...(keepId ? { id: output.id } : {}),
      ...(output.decision ? { decision: summary(output.decision) } : {}),
      ...(output.policy ? { policy: summary(output.policy) } : {}),
    }, nth);
  }
}

export function tallyFailure(report: RedeliverReport, error: RunError): void {
  report.failed++;
  if (report.errors.length < ERRORS_LISTED) report.errors.push(error);
  else report.truncated = true;
}

/** `later` added to `earlier`: counts summed, lists joined within their caps. */
export function mergeReports(earlier: RedeliverReport, later: RedeliverReport): RedeliverReport {
  const merged: RedeliverReport = {
    ...earlier,
    processed: earlier.processed + later.processed,
    runs: earlier.runs + later.runs,
    failed: earlier.failed + later.failed,
    signals_new: earlier.signals_new + later.signals_new,
    signals_deduplicated: earlier.signals_deduplicated + later.signals_deduplicated,
    directives_new: earlier.directives_new + later.directives_new,
    directives_deduplicated: earlier.directives_deduplicated + later.directives_deduplicated,
    decisions: { ...earlier.decisions },
    ...(earlier.dry_run
      ? { would_emit: [...earlier.would_emit!], would_propose: [...earlier.would_propose!] }
      : { emitted: [...earlier.emitted!], proposed: [...earlier.proposed!] }),
    errors: [...earlier.errors],
    truncated: earlier.truncated || later.truncated,
    cancelled: earlier.cancelled || later.cancelled,
    position: later.position ?? earlier.position,
  };
  for (const [effect, count] of Object.entries(later.decisions)) merged.decisions[effect] = (merged.decisions[effect] ?? 0) + count;
  listAll(merged, emitList(merged), emitList(later));
  listAll(merged, proposeList(merged), proposeList(later));
  for (const error of later.errors) {
    if (merged.errors.length < ERRORS_LISTED) merged.errors.push(error);
    else merged.truncated = true;
  }
  return merged;
}
