/**
 * `emit` — the one way into the log. Validate, dedupe, append and apply inline
 * projections in one transaction (the caller's, when it passes `tx`), then wake
 * whoever tails the log once that transaction has committed.
 *
 * When neither a caller's transaction nor an inline projection is involved,
 * the append is a single statement — its own transaction — and goes through
 * the group-commit batcher when one is configured.
 */
import type { Tracer } from '@opentelemetry/api';
import { currentTraceparent, inSpan } from '../telemetry/tracing.ts';
import { DomainError, type FieldError } from '../core/errors.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import type { Queryable, Sql } from '../db/client.ts';
import type { Tenant } from '../core/tenant.ts';
import { appendSignals, type Outcome } from './append.ts';
import { deferSideRows, type AppendBatcher, type SideRows } from './append-batcher.ts';
import type { LogNotifier } from './log-notifier.ts';
import { toSignal, type Signal, type SignalFacts, type SignalRow } from './model.ts';
import { prepare, sameRequest, type Prepared } from './prepare.ts';
import type { VerbContext } from './verb-context.ts';

/**
 * The inline projections `emit` folds new signals into, inside the append's
 * transaction (`src/projections` provides them). `prefetch` starts the
 * projections' row reads so they share the append's round trip; what it
 * returns is handed back to `apply` untouched.
 */
export interface InlineProjections<Prefetched = unknown> {
  handlesAny(types: Iterable<string>): boolean;
  prefetch(db: Queryable, tenant: Tenant, signals: SignalFacts[]): Prefetched;
  apply(db: Queryable, tenant: Tenant, signals: SignalRow[], prefetched?: Prefetched, defer?: Tx['defer']): Promise<void>;
}

/**
 * Checks payloads against the schemas an org's installed packages declare
 * (`src/packages` provides it): one list of errors per item, empty when
 * valid. Synchronous once the org's schemas are in memory.
 */
export interface PayloadValidator {
  /**
   * `tx`, when the emit runs in a caller's transaction: a cold cache is then
   * read through it, never through the pool — a transaction that holds a lock
   * while waiting for a pooled connection deadlocks once the pool's
   * connections all wait for that lock.
   */
  validate(tenant: Tenant, items: ReadonlyArray<{ type: string; payload: unknown }>, tx?: Tx): FieldError[][] | Promise<FieldError[][]>;
}

export interface EmitDeps {
  sql: Sql;
  projections: InlineProjections;
  notifier: Pick<LogNotifier, 'committed'>;
  maxPayloadBytes: number;
  /** Installed packages' payload schemas; absent, payloads are only bounded, not typed. */
  payloads?: PayloadValidator;
  appendBatcher?: AppendBatcher;
  /** Counts for metrics; called after the write. */
  observer?: { emitted(type: string): void; deduplicated(): void };
  /** When set, each emit is a span and the signal stores that span's traceparent. */
  tracer?: Tracer;
}

/** A verb's context with what only emitting takes. */
export interface EmitContext extends VerbContext {
  /** The request's `Idempotency-Key`, used when the body names no `dedupe_key`. */
  idempotencyKey?: string;
  /** The bus's own callers may emit reserved (system) types; API callers may not. */
  system?: boolean;
}

export interface EmitResult {
  signal: Signal;
  deduplicated: boolean;
}

export type BatchItemResult =
  | { status: 'created' | 'deduplicated'; signal: Signal }
  | { status: 'conflict' | 'invalid'; error: { code: string; message: string; errors?: FieldError[] } };

/**
 * A row another table keeps of an emit, committed with its signal (group
 * commit included): `row` gets the outcome — undefined when the dedupe key
 * holds another request (the emit then fails) — and gives the row, or none.
 */
export interface EmitSideRow<Row> {
  row(result: EmitResult | undefined): Row | undefined;
  /** Writes rows of this kind; emits committed together share one statement (the same function). */
  write(db: Queryable, rows: Row[]): ReturnType<SideRows['write']>;
}

const conflictError = (key: string) =>
  new DomainError('idempotency_conflict', `dedupe key ${JSON.stringify(key)} was already used for a different request`);

/** Appends `items` atomically and resolves each to its stored row; `side`'s rows commit with them. */
async function write(deps: EmitDeps, ctx: EmitContext, items: Prepared[], side?: SideRows): Promise<Outcome[]> {
  const needsTransaction =
    ctx.tx !== undefined || deps.projections.handlesAny(items.map((item) => item.type)) || (side !== undefined && !deps.appendBatcher);
  if (!needsTransaction) {
    if (deps.appendBatcher) return deps.appendBatcher.append(ctx.tenant, items, side);
    const { outcomes, inserted } = await appendSignals(deps.sql, ctx.tenant, items);
    if (inserted.length > 0) deps.notifier.committed(ctx.tenant.id);
    return outcomes;
  }
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    // The projections' row reads go out with the INSERT: one round trip, not two.
    const prefetched = deps.projections.prefetch(tx.sql, ctx.tenant, items);
    const { outcomes, inserted } = await appendSignals(tx.sql, ctx.tenant, items);
    if (inserted.length > 0) {
      // The writes go out behind the append; the transaction awaits them, with its COMMIT.
      await deps.projections.apply(tx.sql, ctx.tenant, inserted, prefetched, tx.defer);
      const installations = inserted.some((signal) => signal.type.startsWith('installation.'));
      tx.afterCommit(() => deps.notifier.committed(ctx.tenant.id, installations ? { installations } : undefined));
    }
    deferSideRows(tx, [{ side, outcomes }]);
    return outcomes;
  });
}

/** Runs `fn` in an emit span whose traceparent the signals store (children of the caller's trace). */
function traced<T>(deps: EmitDeps, ctx: EmitContext, name: string, fn: (ctx: EmitContext) => Promise<T>): Promise<T> {
  if (!deps.tracer) return fn(ctx);
  return inSpan(deps.tracer, name, { traceparent: ctx.traceparent ?? null, attributes: { 'signalbus.org': ctx.tenant.slug } }, () =>
    fn({ ...ctx, traceparent: currentTraceparent() ?? ctx.traceparent ?? null }),
  );
}

/** Emits one signal. Throws `idempotency_conflict` when its key holds another request (any client-supplied field). */
export function emit<Row>(deps: EmitDeps, { ctx, input, side }: { ctx: EmitContext; input: unknown; side?: EmitSideRow<Row> }): Promise<EmitResult> {
  return traced(deps, ctx, 'signals.emit', (ctx) => emitOne(deps, ctx, input, side));
}

/** The emit's result for its outcome; undefined when the key holds another request. */
function resultOf(item: Prepared, outcome: Outcome): EmitResult | undefined {
  if (!outcome.created && !sameRequest(outcome.row, item)) return undefined;
  return { signal: toSignal(outcome.row), deduplicated: !outcome.created };
}

/** Schema errors per item from the installed packages' payload schemas (none without a validator). */
async function schemaErrorsOf(deps: EmitDeps, ctx: EmitContext, items: Prepared[]): Promise<FieldError[][] | undefined> {
  if (!deps.payloads) return undefined;
  const checked = deps.payloads.validate(ctx.tenant, items, ctx.tx);
  return checked instanceof Promise ? await checked : checked;
}

const schemaFailure = (type: string, errors: FieldError[]) =>
  new DomainError('validation_failed', `the payload does not match the schema an installed package declares for ${type}`, errors);

async function emitOne<Row>(deps: EmitDeps, ctx: EmitContext, input: unknown, side?: EmitSideRow<Row>): Promise<EmitResult> {
  const item = prepare(ctx, input, deps.maxPayloadBytes, ctx.idempotencyKey ? { idempotencyKey: ctx.idempotencyKey } : {});
  const errors = (await schemaErrorsOf(deps, ctx, [item]))?.[0];
  if (errors && errors.length > 0) throw schemaFailure(item.type, errors);
  const sideRows: SideRows | undefined = side && {
    rows: ([outcome]) => {
      const row = side.row(resultOf(item, outcome!));
      return row === undefined ? [] : [row];
    },
    write: side.write as SideRows['write'],
  };
  const [outcome] = await write(deps, ctx, [item], sideRows);
  if (outcome!.created) deps.observer?.emitted(item.type);
  else deps.observer?.deduplicated();
  const result = resultOf(item, outcome!);
  if (!result) throw conflictError(item.dedupeKey);
  return result;
}

/**
 * Emits many signals in one transaction; each item gets its own status, in
 * input order. Invalid items are reported and do not stop the others; items
 * repeating a key within the batch resolve as if sent one after another.
 * `ctx.idempotencyKey` is ignored: one key cannot dedupe many items.
 */
export function emitBatch(deps: EmitDeps, { ctx, inputs }: { ctx: EmitContext; inputs: unknown[] }): Promise<BatchItemResult[]> {
  return traced(deps, ctx, 'signals.emit_batch', (ctx) => emitMany(deps, ctx, inputs));
}

async function emitMany(deps: EmitDeps, ctx: EmitContext, inputs: unknown[]): Promise<BatchItemResult[]> {
  const results: BatchItemResult[] = new Array(inputs.length);
  const valid: Array<{ index: number; item: Prepared }> = [];
  const now = new Date().toISOString();
  inputs.forEach((input, index) => {
    try {
      valid.push({ index, item: prepare(ctx, input, deps.maxPayloadBytes, { now }) });
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      results[index] = {
        status: 'invalid',
        error: { code: error.code, message: error.message, ...(error.errors ? { errors: error.errors } : {}) },
      };
    }
  });
  const errors = valid.length > 0 ? await schemaErrorsOf(deps, ctx, valid.map(({ item }) => item)) : undefined;
  if (errors?.some((list) => list.length > 0)) {
    const failing = new Set<number>();
    errors.forEach((list, position) => {
      if (list.length === 0) return;
      const { index, item } = valid[position]!;
      const error = schemaFailure(item.type, list);
      results[index] = { status: 'invalid', error: { code: error.code, message: error.message, errors: list } };
      failing.add(position);
    });
    valid.splice(0, valid.length, ...valid.filter((_, position) => !failing.has(position)));
  }
  const outcomes = valid.length > 0 ? await write(deps, ctx, valid.map(({ item }) => item)) : [];
  valid.forEach(({ index, item }, position) => {
    const { row, created } = outcomes[position]!;
    if (created) deps.observer?.emitted(item.type);
    else deps.observer?.deduplicated();
    if (created) results[index] = { status: 'created', signal: toSignal(row) };
    else if (sameRequest(row, item)) results[index] = { status: 'deduplicated', signal: toSignal(row) };
    else {
      const error = conflictError(item.dedupeKey);
      results[index] = { status: 'conflict', error: { code: error.code, message: error.message } };
    }
  });
  return results;
}
