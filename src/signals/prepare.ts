/**
 * Turning an emit request into a row to append: validation, the reserved-type
 * rule, the payload limit, canonical hashing and the dedupe key. Pure apart
 * from the clock and the id it draws.
 */
import type { Actor } from '../auth/actor.ts';
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
  dedupeKey: string;
  correlationId: string | null;
  causationId: string | null;
  occurredAt: string;
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
    payload: input.payload,
    payloadJson,
    payloadHash,
    dedupeKey,
    correlationId: input.correlation_id ?? null,
    causationId: input.causation_id ?? null,
    occurredAt,
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

/** True when a stored signal holds the same fact as `item`: a duplicate, not a conflict. */
export function sameContent(stored: { payload_hash: string; type: string }, item: Prepared): boolean {
  return stored.payload_hash === item.payloadHash && stored.type === item.type;
}
