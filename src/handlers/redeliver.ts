/**
 * Redelivery: run chosen handlers (or every handler the org is subscribed
 * to) again over a selection of the log, with their current code or rules.
 * Outputs are written under the same keys a live run uses
 * (outputs.ts), so whatever was done before resolves to the row already
 * there — counted as deduplicated, never done again — and only what the
 * handlers now produce beyond it is new. New directives are held for a
 * human by default (`new_directives: "hold"`), whatever the policy allows;
 * `"execute"` sends them through policy like live ones.
 *
 * A run that produces something new is recorded as an execution of the
 * handler, in the transaction that writes its outputs; a run whose outputs
 * all exist writes nothing. A dry run does the same writes in transactions
 * it rolls back: its report is what a real run would do, and nothing of it
 * survives — no row, no job, so no provider is ever called.
 *
 * Work goes in pages by position, below the horizon captured at planning,
 * so a run has a known total and a resumed run (from `after`) reaches the
 * same totals. Rate limiting, progress and cancel are the caller's hooks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Queryable } from '../db/client.ts';
import { withTransaction } from '../db/transaction.ts';
import { decodeCursor, encodeCursor, parseTypeFilter, SIGNAL_COLUMNS, type Cursor, type SignalRow } from '../signals/model.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';
import { collect, depthExceeded, recordSucceeded, scopeViolation, writeOutputs, type WrittenOutputs } from './outputs.ts';
import { emptyReport, mergeReports, tallyFailure, tallyRun, type RedeliverReport } from './redeliver-report.ts';
import { alreadyDone, storedOutputs, type PendingRun } from './redeliver-existing.ts';
import type { RuntimeDeps } from './runtime.ts';

const Timestamp = z.iso.datetime({ offset: true });

export const RedeliverSelection = z
  .object({
    /** Positions: after (exclusive) and until (inclusive). */
    after: z.string().optional(),
    until: z.string().optional(),
    /** Exact types or `prefix.*`, as a list or comma separated. */
    types: z.union([z.string().max(2000), z.array(z.string().max(200)).max(100)]).optional(),
    subject: z.string().min(1).max(256).optional(),
    /** Recorded at or after `since`, before `before`. */
    since: Timestamp.optional(),
    before: Timestamp.optional(),
  })
  .strict();
export type RedeliverSelection = z.infer<typeof RedeliverSelection>;

export const RedeliverInput = z.object({
  selection: RedeliverSelection.default({}),
  /** Handler ids; absent, every registered handler the org is subscribed to. */
  handlers: z.array(z.string().min(1).max(63)).min(1).max(100).optional(),
  new_directives: z.enum(['hold', 'execute']).default('hold'),
  dry_run: z.boolean().default(false),
  /** Signals per second; absent, as fast as it goes. */
  rate_per_s: z.number().positive().max(1_000_000).optional(),
  /** Why (the ticket): held directives name it in their decision. */
  reason: z.string().max(500).optional(),
});
export type RedeliverInput = z.input<typeof RedeliverInput>;
type ParsedInput = z.output<typeof RedeliverInput>;

/** What planning fixed: everything a resumed run needs besides its position. JSON, for checkpoints. */
export interface RedeliveryPlan {
  handlers: string[];
  /** Positions (exclusive, inclusive) bounding the selection; `until` is null for an empty log. */
  after: string;
  until: string | null;
  total: number;
}

function parseInput(input: unknown): ParsedInput {
  const parsed = RedeliverInput.safeParse(input);
  if (!parsed.success) {
    throw new DomainError(
      'validation_failed',
      'the redelivery is not valid',
      parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
    );
  }
  return parsed.data;
}

/** The selection's WHERE clause past the position bounds. */
function matching(db: Queryable, selection: RedeliverSelection) {
  const types = parseTypeFilter(Array.isArray(selection.types) ? selection.types.join(',') : selection.types, 'selection.types');
  return db`
    ${types ? db`and (type = any(${types.exact}::text[]) or type like any(${types.prefixes}::text[]))` : db``}
    ${selection.subject !== undefined ? db`and subject = ${selection.subject}` : db``}
    ${selection.since ? db`and recorded_at >= ${selection.since}::timestamptz` : db``}
    ${selection.before ? db`and recorded_at < ${selection.before}::timestamptz` : db``}`;
}

const within = (db: Queryable, after: Cursor, until: Cursor) =>
  db`(tx_id, seq) > (${after.txId}::xid8, ${after.seq}::bigint) and (tx_id, seq) <= (${until.txId}::xid8, ${until.seq}::bigint)`;

/**
 * Resolves the handlers and fixes the selection's end at the log's present
 * horizon (or `until`, when earlier), counting the signals it holds.
 */
export async function planRedelivery(deps: RuntimeDeps, { ctx, input }: VerbCall<unknown>): Promise<RedeliveryPlan> {
  const parsed = parseInput(input);
  const { selection } = parsed;
  const db = ctx.tx?.sql ?? deps.sql;
  const signals = db(`${ctx.tenant.schema}.signals`);
  let handlers: string[];
  const registry = await deps.handlers.forOrg(ctx.tenant);
  if (parsed.handlers) {
    const unknown = parsed.handlers.filter((id) => !registry.get(id));
    if (unknown.length > 0) {
      throw new DomainError('validation_failed', 'the redelivery is not valid', [{ path: 'handlers', message: `no handler ${unknown.join(', ')} is registered` }]);
    }
    handlers = [...new Set(parsed.handlers)];
  } else {
    const subscribed = await db<{ handler: string }[]>`select handler from ${db(`${ctx.tenant.schema}.subscriptions`)} order by handler`;
    handlers = subscribed.map((row) => row.handler).filter((id) => registry.get(id));
  }
  const after = selection.after ? decodeCursor(selection.after, 'selection.after') : { txId: '0', seq: '0' };
  const [last] = await db<{ tx_id: string; seq: string }[]>`
    select tx_id::text as tx_id, seq::text as seq from ${signals}
     where tx_id < pg_snapshot_xmin(pg_current_snapshot())
       ${selection.until ? db`and (tx_id, seq) <= (${decodeCursor(selection.until, 'selection.until').txId}::xid8, ${decodeCursor(selection.until, 'selection.until').seq}::bigint)` : db``}
     -- Qualified: bare names would sort by the text aliases above ('10' < '9').
     order by signals.tx_id desc, signals.seq desc limit 1`;
  const until = last ? { txId: last.tx_id, seq: last.seq } : null;
  let total = 0;
  if (until && handlers.length > 0) {
    const [row] = await db<{ n: number }[]>`
      select count(*)::int as n from ${signals} where ${within(db, after, until)} ${matching(db, selection)}`;
    total = row!.n;
  }
  return { handlers, after: encodeCursor(after), until: until ? encodeCursor(until) : null, total };
}

/** Thrown to roll a dry run's transaction back with what it wrote. */
class RolledBack {
  constructor(readonly written: WrittenOutputs) {}
}

const errorOf = (error: unknown) =>
  error instanceof DomainError
    ? { code: error.code, message: error.message }
    : { code: 'handler_error', message: error instanceof Error ? error.message.slice(0, 1000) : 'the handler failed' };

/** As the live runtime acts: the same actor and source, so outputs compare as the same requests. */
function handlerContext(ctx: VerbContext, handler: string): VerbContext {
  return {
    tenant: ctx.tenant,
    actor: { type: 'system', id: `handler:${handler}` },
    source: `handler:${handler}`,
    traceparent: ctx.traceparent ?? null,
    ...(ctx.requestId ? { requestId: ctx.requestId } : {}),
  };
}

/** One handler's run on one signal, collected: its outputs, or null when it matched not, produced nothing or failed (tallied). */
async function collectRun(deps: RuntimeDeps, ctx: VerbContext, report: RedeliverReport, handlerId: string, signal: SignalRow): Promise<PendingRun | null> {
  const handler = (await deps.handlers.forOrg(ctx.tenant)).get(handlerId);
  if (!handler || !handler.matches(signal)) return null;
  report.runs++;
  try {
    const outputs = await collect(handler, signal, 1);
    if (outputs.signals.length + outputs.directives.length === 0) return null;
    const refused = scopeViolation(handler, outputs) ?? depthExceeded(signal, outputs, deps.maxCausationDepth);
    if (refused) {
      tallyFailure(report, { signal_id: signal.id, handler: handler.id, ...refused });
      return null;
    }
    return { signalId: signal.id, handler: handler.id, outputs, ctx: handlerContext(ctx, handler.id) };
  } catch (error) {
    tallyFailure(report, { signal_id: signal.id, handler: handler.id, ...errorOf(error) });
    return null;
  }
}

/** Writes a run's outputs (rolled back in a dry run) with its execution when anything is new, and tallies them. */
async function writeRun(deps: RuntimeDeps, input: ParsedInput, report: RedeliverReport, run: PendingRun, signal: SignalRow): Promise<void> {
  const handler = (await deps.handlers.forOrg(run.ctx.tenant)).get(run.handler)!;
  const now = () => (deps.now ? deps.now() : new Date());
  const startedAt = now();
  const hold = input.new_directives === 'hold' ? `held for approval by a redelivery${input.reason ? ` (${input.reason})` : ''}` : undefined;
  try {
    const written = await withTransaction(deps.sql, undefined, async (tx) => {
      const written = await writeOutputs(deps, run.ctx, tx, { handler, signal, outputs: run.outputs, ...(hold ? { hold } : {}) });
      if (input.dry_run) throw new RolledBack(written);
      const created = written.signals.some((output) => output.created) || written.directives.some((output) => output.created);
      if (created) {
        await recordSucceeded(deps, run.ctx, tx, { executionId: newId('execution'), handler: handler.id, signal, attempt: 1, startedAt, finishedAt: now(), outputs: written });
      }
      return written;
    }).catch((error: unknown) => {
      if (error instanceof RolledBack) return error.written;
      throw error;
    });
    tallyRun(report, { cause: signal.id, handler: handler.id, written });
  } catch (error) {
    tallyFailure(report, { signal_id: signal.id, handler: handler.id, ...errorOf(error) });
  }
}

/**
 * Redelivers the page of at most `limit` signals after `after` (a position;
 * the plan's start for the first page). Returns the page's report; its
 * `position` is where the next page starts, null when none was read.
 */
export async function redeliverPage(
  deps: RuntimeDeps,
  { ctx, input, plan, after, limit }: VerbCall<unknown> & { plan: RedeliveryPlan; after: string; limit: number },
): Promise<{ report: RedeliverReport; done: boolean }> {
  const parsed = parseInput(input);
  const report = emptyReport({ dry_run: parsed.dry_run, new_directives: parsed.new_directives, handlers: plan.handlers });
  if (!plan.until || plan.handlers.length === 0) return { report, done: true };
  const db = deps.sql;
  const page = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)} from ${db(`${ctx.tenant.schema}.signals`)}
     where ${within(db, decodeCursor(after, 'after'), decodeCursor(plan.until, 'until'))} ${matching(db, parsed.selection)}
     order by tx_id, seq limit ${limit}`;
  // Handlers run first, in memory; one read then finds which runs are already done.
  const runs: Array<{ run: PendingRun; signal: SignalRow }> = [];
  for (const signal of page) {
    for (const handler of plan.handlers) {
      const run = await collectRun(deps, ctx, report, handler, signal);
      if (run) runs.push({ run, signal });
    }
  }
  const stored = await storedOutputs(db, ctx.tenant, runs.map(({ run }) => run));
  for (const { run, signal } of runs) {
    const done = alreadyDone(deps, run, stored);
    if (done) tallyRun(report, { cause: signal.id, handler: run.handler, written: done });
    else await writeRun(deps, parsed, report, run, signal);
  }
  report.processed = page.length;
  report.position = page.at(-1)?.position ?? null;
  return { report, done: page.length < limit };
}

export interface RedeliverHooks {
  /** After each page, with the totals so far (a checkpoint: `report.position` is where to resume). */
  onProgress?(progress: { processed: number; total: number; report: RedeliverReport }): Promise<void> | void;
  /** Asked before each page; true stops the run, reported as cancelled. */
  cancelled?(): Promise<boolean> | boolean;
}

/**
 * Plans and runs a whole redelivery, paced to `rate_per_s`. `resume` goes on
 * from a checkpoint: the plan and the report reached.
 */
export async function redeliver(
  deps: RuntimeDeps,
  { ctx, input, hooks = {}, pageSize = 200, resume }: VerbCall<unknown> & {
    hooks?: RedeliverHooks;
    pageSize?: number;
    resume?: { plan: RedeliveryPlan; report: RedeliverReport };
  },
): Promise<{ plan: RedeliveryPlan; report: RedeliverReport }> {
  const parsed = parseInput(input);
  const plan = resume?.plan ?? (await planRedelivery(deps, { ctx, input }));
  let report = resume?.report ?? emptyReport({ dry_run: parsed.dry_run, new_directives: parsed.new_directives, handlers: plan.handlers });
  // A page holds about a second's worth at the paced rate, so pacing stays smooth.
  const limit = parsed.rate_per_s ? Math.max(1, Math.min(pageSize, Math.ceil(parsed.rate_per_s))) : pageSize;
  const started = performance.now();
  const startedAt = report.processed;
  for (;;) {
    if (await hooks.cancelled?.()) return { plan, report: { ...report, cancelled: true } };
    const page = await redeliverPage(deps, { ctx, input, plan, after: report.position ?? plan.after, limit });
    report = mergeReports(report, page.report);
    await hooks.onProgress?.({ processed: report.processed, total: plan.total, report });
    if (page.done) return { plan, report };
    if (parsed.rate_per_s) {
      const due = ((report.processed - startedAt) / parsed.rate_per_s) * 1000 - (performance.now() - started);
      if (due > 0) await sleep(due);
    }
  }
}
