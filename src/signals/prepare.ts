/**
 * Turning an emit request into a row to append: validation, the reserved-type
 * rule, the payload limit, canonical hashing and the dedupe key. Pure apart
 * from the clock and the id it draws.
 */
import type { Actor } from './actor.ts';
import { canonicalJson, sha256Hex } from '../core/canonical-json.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { EmitSignalInput, isReservedType, parseEmitInputFast } from './model.ts';

/** Who and where, common to the signals of one emit call. */
export interface Origin {
  actor: Actor;
  /** Where the signal entered: `api`, `webhook:stripe`, `handler:<id>`, `system`. */
  source: string;
  traceparent?: string | null;
  installationId?: string | null;
  /** The bus's own callers may emit reserved (system) types; API callers may not. */
  system?: boolean;
}

/** A validated signal, ready to append. */
export interface Prepared {
  id: string;
  type: string;
  schemaVersion: number;
  subject: string | null;
  payload: Record<string, unknown>;
  payloadJson: string;
  payloadHash: string;
  /** Hash of every client-supplied field: a repeated key with another request is a conflict. */
  requestHash: string;
  dedupeKey: string;
  correlationId: string | null;
  causationId: string | null;
  occurredAt: string;
  /** False when `occurred_at` was left to the clock. */
  occurredAtClaimed: boolean;
  actor: Actor;
  actorJson: string;
  source: string;
  traceparent: string | null;
  installationId: string | null;
}

const actorJsonCache = new WeakMap<Actor, string>();

function actorJson(actor: Actor): string {
  let json = actorJsonCache.get(actor);
  if (json === undefined) actorJsonCache.set(actor, (json = JSON.stringify(actor)));
  return json;
}

/**
 * Validates one signal. `now` (ISO) stands in for a missing `occurred_at`;
 * a batch passes one instant for all of its items.
 */
export function prepare(
  origin: Origin,
  raw: unknown,
  maxPayloadBytes: number,
  { idempotencyKey, now = new Date().toISOString() }: { idempotencyKey?: string; now?: string } = {},
): Prepared {
  const input = parseEmitInputFast(raw) ?? parseEmitInput(raw);
  if (idempotencyKey !== undefined && input.dedupe_key !== undefined && input.dedupe_key !== idempotencyKey) {
    throw new DomainError('validation_failed', 'the Idempotency-Key header and the body\'s dedupe_key differ', [
      { path: 'dedupe_key', message: 'must equal the Idempotency-Key header when both are sent' },
    ]);
  }
  if (!origin.system && isReservedType(input.type)) {
    throw new DomainError('reserved_type', `${input.type} is a system type that only signalbus itself emits`, [
      { path: 'type', message: 'reserved prefix' },
    ]);
  }
  const payloadJson = canonicalJson(input.payload);
  // A UTF-16 code unit is at most 3 UTF-8 bytes: most payloads need no count.
  const payloadBytes = payloadJson.length * 3 <= maxPayloadBytes ? 0 : Buffer.byteLength(payloadJson);
  if (payloadBytes > maxPayloadBytes) {
    throw new DomainError('payload_too_large', `payload is ${payloadBytes} bytes; the limit is ${maxPayloadBytes}`, [
      { path: 'payload', message: 'too large' },
    ]);
  }
  const id = newId('signal');
  const occurredAt = input.occurred_at ? new Date(input.occurred_at).toISOString() : now;
  const subject = input.subject ?? null;
  const payloadHash = sha256Hex(payloadJson);
  const schemaVersion = input.schema_version ?? 1;
  const correlationId = input.correlation_id ?? null;
  const causationId = input.causation_id ?? null;
  const claimedOccurredAt = input.occurred_at ? occurredAt : null;
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
    schemaVersion,
    subject,
    payload: input.payload,
    payloadJson,
    payloadHash,
    requestHash: requestHash({ type: input.type, subject, payloadHash, occurredAt: claimedOccurredAt, correlationId, causationId, schemaVersion }),
    dedupeKey,
    correlationId,
    causationId,
    occurredAt,
    occurredAtClaimed: claimedOccurredAt !== null,
    actor: origin.actor,
    actorJson: actorJson(origin.actor),
    source: origin.source,
    traceparent: origin.traceparent ?? null,
    installationId: origin.installationId ?? null,
  };
}

function parseEmitInput(raw: unknown): EmitSignalInput {
  const parsed = EmitSignalInput.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new DomainError(
    'validation_failed',
    'the signal is not valid',
    parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })),
  );
}

/**
 * What a client chose: every field it may send except the key itself, with
 * an omitted field as null (or its default) — an omitted `occurred_at` is
 * the clock's, not the client's, so a retry without it is the same request.
 */
interface RequestFields {
  type: string;
  subject: string | null;
  payloadHash: string;
  occurredAt: string | null;
  correlationId: string | null;
  causationId: string | null;
  schemaVersion: number;
}

function requestHash(fields: RequestFields): string {
  const { type, subject, payloadHash, occurredAt, correlationId, causationId, schemaVersion } = fields;
  // An array, so the order is fixed without a canonical stringify.
  return sha256Hex(JSON.stringify([type, subject, payloadHash, occurredAt, correlationId, causationId, schemaVersion]));
}

/** The stored side of a dedupe comparison (a row read back, or an item of the same append). */
export interface StoredRequest {
  type: string;
  subject: string | null;
  payload_hash: string;
  occurred_at: string;
  correlation_id: string | null;
  causation_id: string | null;
  schema_version: number;
  /** Null on signals stored before requests were hashed. */
  request_hash?: string | null;
}

/**
 * True when `item` repeats the request that stored `stored`: a duplicate, not
 * a conflict. Signals stored before requests were hashed are hashed from what
 * they hold; whether their client named `occurred_at` or `correlation_id` is
 * not recorded (the clock and inheritance fill them), so those two are
 * compared only when the repeat names them.
 */
export function sameRequest(stored: StoredRequest, item: Prepared): boolean {
  if (stored.request_hash) return stored.request_hash === item.requestHash;
  return (
    requestHash({
      type: stored.type,
      subject: stored.subject,
      payloadHash: stored.payload_hash,
      occurredAt: item.occurredAtClaimed ? new Date(stored.occurred_at).toISOString() : null,
      correlationId: item.correlationId === null ? null : stored.correlation_id,
      causationId: stored.causation_id,
      schemaVersion: stored.schema_version,
    }) === item.requestHash
  );
}
