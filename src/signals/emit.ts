/**
 * `emit` — the one way into the log. Validate, dedupe, append and apply inline
 * projections in one transaction (the caller's, when it passes `tx`), then wake
 * whoever tails the log once that transaction has committed.
 *
 * Dedupe is enforced by the unique index on `dedupe_key` (`ON CONFLICT DO
 * NOTHING`), never by read-then-write: concurrent emits of one key wait on the
 * index and all but one find the stored row. When no projection handles a
 * signal's type the append is a single statement, which is its own transaction.
 */
import type { Actor } from '../auth/actor.ts';
import { canonicalJson, sha256Hex } from '../core/canonical-json.ts';
import { DomainError, type FieldError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import type { ProjectionRegistry } from '../projections/registry.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import type { LogNotifier } from './log-notifier.ts';
import { EmitSignalInput, isReservedType, SIGNAL_COLUMNS, toSignal, type Signal, type SignalRow } from './model.ts';

export interface EmitDeps {
  sql: Sql;
  projections: ProjectionRegistry;
  notifier: Pick<LogNotifier, 'committed'>;
  maxPayloadBytes: number;
}

export interface EmitContext {
  tenant: TenantRef;
  actor: Actor;
  /** Where the signal entered: `api`, `webhook:stripe`, `handler:<id>`, `system`. */
  source: string;
  traceparent?: string | null;
  /** The request's `Idempotency-Key`, used when the body names no `dedupe_key`. */
  idempotencyKey?: string;
  installationId?: string | null;
  /** The bus's own callers may emit reserved (system) types; API callers may not. */
  system?: boolean;
  tx?: Tx;
}

export interface EmitResult {
  signal: Signal;
  deduplicated: boolean;
}

export type BatchItemResult =
  | { status: 'created' | 'deduplicated'; signal: Signal }
  | { status: 'conflict' | 'invalid'; error: { code: string; message: string; errors?: FieldError[] } };

interface Prepared {
  id: string;
  type: string;
  schemaVersion: number;
  subject: string | null;
  payloadJson: string;
  payloadHash: string;
  dedupeKey: string;
  correlationId: string | null;
  causationId: string | null;
  occurredAt: string;
}

function prepare(ctx: EmitContext, raw: unknown, maxPayloadBytes: number, idempotencyKey?: string): Prepared {
  const parsed = EmitSignalInput.safeParse(raw);
  if (!parsed.success) {
    throw new DomainError(
      'validation_failed',
      'the signal is not valid',
      parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
    );
  }
  const input = parsed.data;
  if (!ctx.system && isReservedType(input.type)) {
    throw new DomainError('reserved_type', `${input.type} is a system type that only signalbus itself emits`, [
      { path: 'type', message: 'reserved prefix' },
    ]);
  }
  const payloadJson = canonicalJson(input.payload);
  const payloadBytes = Buffer.byteLength(payloadJson);
  if (payloadBytes > maxPayloadBytes) {
    throw new DomainError('payload_too_large', `payload is ${payloadBytes} bytes; the limit is ${maxPayloadBytes}`, [
      { path: 'payload', message: 'too large' },
    ]);
  }
  const id = newId('signal');
  const occurredAt = input.occurred_at ? new Date(input.occurred_at).toISOString() : new Date().toISOString();
  const subject = input.subject ?? null;
  const payloadHash = sha256Hex(payloadJson);
  // Without a key, a retry is recognisable only when the caller claimed when
  // the fact occurred; otherwise each call is a new fact.
  const dedupeKey =
    input.dedupe_key ??
    idempotencyKey ??
    (input.occurred_at
      ? `content:${sha256Hex(canonicalJson({ type: input.type, subject, payload: payloadHash, occurred_at: occurredAt }))}`
      : `signal:${id}`);
  return {
    id,
    type: input.type,
    schemaVersion: input.schema_version ?? 1,
    subject,
    payloadJson,
    payloadHash,
    dedupeKey,
    correlationId: input.correlation_id ?? null,
    causationId: input.causation_id ?? null,
    occurredAt,
  };
}

/**
 * Appends prepared signals; rows whose key already exists are skipped.
 * Correlation is inherited from the causing signal when the caller names none.
 */
async function append(db: Queryable, ctx: EmitContext, items: Prepared[]): Promise<SignalRow[]> {
  const table = db(`${ctx.tenant.schema}.signals`);
  return db<SignalRow[]>`
    insert into ${table} (id, type, schema_version, subject, payload, actor, source, dedupe_key, payload_hash,
                          correlation_id, causation_id, causation_depth, installation_id, trace, occurred_at)
    select i.id, i.type, i.schema_version, i.subject, i.payload::jsonb, ${db.json(ctx.actor)},
           ${ctx.source}, i.dedupe_key, i.payload_hash, coalesce(i.correlation_id, c.correlation_id, i.id),
           i.causation_id, coalesce(c.causation_depth + 1, 0), ${ctx.installationId ?? null},
           ${ctx.traceparent ?? null}, i.occurred_at
      from unnest(${items.map((item) => item.id)}::text[], ${items.map((item) => item.type)}::text[],
                  ${items.map((item) => item.schemaVersion)}::int[], ${items.map((item) => item.subject)}::text[],
                  ${items.map((item) => item.payloadJson)}::text[], ${items.map((item) => item.dedupeKey)}::text[],
                  ${items.map((item) => item.payloadHash)}::text[], ${items.map((item) => item.correlationId)}::text[],
                  ${items.map((item) => item.causationId)}::text[], ${items.map((item) => item.occurredAt)}::timestamptz[])
           with ordinality as i(id, type, schema_version, subject, payload, dedupe_key, payload_hash,
                                correlation_id, causation_id, occurred_at, ord)
      left join ${table} c on c.id = i.causation_id
     order by i.ord
    on conflict (dedupe_key) do nothing
    returning ${db.unsafe(SIGNAL_COLUMNS)}`;
}

async function findByDedupeKeys(db: Queryable, tenant: TenantRef, keys: string[]): Promise<Map<string, SignalRow>> {
  const rows = await db<SignalRow[]>`
    select ${db.unsafe(SIGNAL_COLUMNS)} from ${db(`${tenant.schema}.signals`)} where dedupe_key = any(${keys}::text[])`;
  return new Map(rows.map((row) => [row.dedupe_key, row]));
}

function sameContent(stored: SignalRow, item: Prepared): boolean {
  return stored.payload_hash === item.payloadHash && stored.type === item.type;
}

const conflictError = (key: string) =>
  new DomainError('idempotency_conflict', `dedupe key ${JSON.stringify(key)} was already used for a different signal`);

/**
 * Writes `items` (already deduplicated among themselves) and resolves each to
 * its stored row: `created` when this call inserted it, otherwise the row that
 * held the key first.
 */
async function write(
  deps: EmitDeps,
  ctx: EmitContext,
  items: Prepared[],
): Promise<Array<{ row: SignalRow; created: boolean }>> {
  const run = async (db: Queryable, tx?: Tx) => {
    const inserted = await append(db, ctx, items);
    if (tx && inserted.length > 0) await deps.projections.apply(tx, ctx.tenant, inserted);
    const byKey = new Map(inserted.map((row) => [row.dedupe_key, row]));
    const missing = items.filter((item) => !byKey.has(item.dedupeKey)).map((item) => item.dedupeKey);
    const existing = missing.length > 0 ? await findByDedupeKeys(db, ctx.tenant, missing) : new Map();
    return { inserted, resolved: items.map((item) => {
      const row = byKey.get(item.dedupeKey);
      if (row) return { row, created: true };
      const stored = existing.get(item.dedupeKey);
      // The unique index guarantees a stored row exists for a skipped key.
      if (!stored) throw new Error(`dedupe key ${item.dedupeKey} skipped but not found`);
      return { row: stored, created: false };
    }) };
  };

  const needsTransaction = ctx.tx !== undefined || deps.projections.handlesAny(items.map((item) => item.type));
  if (!needsTransaction) {
    const { inserted, resolved } = await run(deps.sql);
    if (inserted.length > 0) deps.notifier.committed(ctx.tenant.id);
    return resolved;
  }
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const { inserted, resolved } = await run(tx.sql, tx);
    if (inserted.length > 0) tx.afterCommit(() => deps.notifier.committed(ctx.tenant.id));
    return resolved;
  });
}

/** Emits one signal. Throws `idempotency_conflict` when its key holds another payload. */
export async function emit(deps: EmitDeps, { ctx, input }: { ctx: EmitContext; input: unknown }): Promise<EmitResult> {
  const item = prepare(ctx, input, deps.maxPayloadBytes, ctx.idempotencyKey);
  const [result] = await write(deps, ctx, [item]);
  if (!result!.created && !sameContent(result!.row, item)) throw conflictError(item.dedupeKey);
  return { signal: toSignal(result!.row), deduplicated: !result!.created };
}

/**
 * Emits many signals in one transaction; each item gets its own status, in
 * input order. Invalid items are reported and do not stop the others.
 */
export async function emitBatch(
  deps: EmitDeps,
  { ctx, inputs }: { ctx: EmitContext; inputs: unknown[] },
): Promise<BatchItemResult[]> {
  const results: BatchItemResult[] = new Array(inputs.length);
  const firstByKey = new Map<string, number>();
  const toWrite: Prepared[] = [];
  const prepared: Array<Prepared | undefined> = inputs.map((input, index) => {
    try {
      const item = prepare(ctx, input, deps.maxPayloadBytes);
      if (!firstByKey.has(item.dedupeKey)) {
        firstByKey.set(item.dedupeKey, index);
        toWrite.push(item);
      }
      return item;
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      results[index] = {
        status: 'invalid',
        error: { code: error.code, message: error.message, ...(error.errors ? { errors: error.errors } : {}) },
      };
      return undefined;
    }
  });
  const written = toWrite.length > 0 ? await write(deps, ctx, toWrite) : [];
  const outcomeByKey = new Map(toWrite.map((item, position) => [item.dedupeKey, { item, ...written[position]! }]));

  prepared.forEach((item, index) => {
    if (!item) return;
    const outcome = outcomeByKey.get(item.dedupeKey)!;
    const isFirst = firstByKey.get(item.dedupeKey) === index;
    if (!sameContent(outcome.row, item)) {
      const error = conflictError(item.dedupeKey);
      results[index] = { status: 'conflict', error: { code: error.code, message: error.message } };
    } else {
      results[index] = {
        status: isFirst && outcome.created ? 'created' : 'deduplicated',
        signal: toSignal(outcome.row),
      };
    }
  });
  return results;
}
