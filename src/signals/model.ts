/**
 * The signal: its input schema, its stored row, its public shape, and the
 * commit-ordered cursor. A position is (tx_id, seq) — the writing transaction's
 * xid8 and a sequence — encoded as 32 hex characters so it is opaque to
 * clients yet sorts as a string.
 */
import { z } from 'zod';
import { Actor } from './actor.ts';
import { DomainError } from '../core/errors.ts';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../core/storable-text.ts';

export const SIGNAL_TYPE_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
/** Types the bus itself emits; API callers may not (ARCHITECTURE.md, System types). */
export const RESERVED_TYPE_PREFIXES = ['directive', 'execution', 'installation', 'policy', 'replay', 'org', 'secret', 'webhook'];

export function isReservedType(type: string): boolean {
  return RESERVED_TYPE_PREFIXES.includes(type.slice(0, type.indexOf('.')));
}

export const SignalType = z
  .string()
  .max(200)
  .regex(SIGNAL_TYPE_PATTERN, 'type must be dotted lowercase segments, e.g. forum.post.created');

// NUL and unpaired surrogates are refused here as invalid input (per item in
// a batch), not left to fail the insert as a 500.
/** Canonical JSON and jsonb both recurse: a hostile depth would overflow the stack (a 500). */
const MAX_PAYLOAD_DEPTH = 128;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Why a payload cannot be stored, or undefined. Iterative, so depth cannot overflow it. */
function payloadProblem(payload: unknown): string | undefined {
  const pending: Array<[unknown, number]> = [[payload, 0]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;
    if (typeof value === 'string') {
      if (!isStorableText(value)) return UNSTORABLE_TEXT_MESSAGE;
    } else if (value && typeof value === 'object') {
      if (depth >= MAX_PAYLOAD_DEPTH) return `must not nest deeper than ${MAX_PAYLOAD_DEPTH} levels`;
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        if (!isStorableText(key)) return UNSTORABLE_TEXT_MESSAGE;
        pending.push([(value as Record<string, unknown>)[key], depth + 1]);
      }
    }
  }
  return undefined;
}

const shortText = z.string().min(1).max(256).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE);

export const EmitSignalInput = z.object({
  type: SignalType,
  subject: shortText.nullish(),
  // Checked in place rather than parsed as a record, which would copy every
  // payload member by member on the emit path.
  payload: z
    .custom<Record<string, unknown>>(isPlainObject, 'payload must be a JSON object')
    .superRefine((payload, ctx) => {
      const message = payloadProblem(payload);
      if (message) ctx.addIssue({ code: 'custom', message });
    })
    .meta({ type: 'object', additionalProperties: true, description: 'The signal\'s content, a JSON object' }),
  dedupe_key: shortText.optional(),
  // PostgreSQL has no year 0: `0000-…` (or `0001-…` with a positive offset) is out of its range.
  occurred_at: z.iso
    .datetime({ offset: true })
    .refine((value) => new Date(value).getUTCFullYear() >= 1, 'occurred_at is out of range')
    .optional(),
  correlation_id: shortText.nullish(),
  causation_id: shortText.nullish(),
  schema_version: z.number().int().min(1).max(1000).optional(),
});
export type EmitSignalInput = z.infer<typeof EmitSignalInput>;

const { $schema: _jsonSchemaDialect, ...emitSignalJsonSchema } = z.toJSONSchema(EmitSignalInput, { unrepresentable: 'any', io: 'input' });

/**
 * The emit body as the HTTP route checks it: documented as `EmitSignalInput`,
 * checked by the fast path first and by the schema (which words the errors)
 * only when that declines, so a well-formed emit is not parsed by zod twice.
 */
export const EmitSignalBody = z
  .unknown()
  // One pass: only the known fields go on, as the schema would pass them.
  .transform((value, ctx) => {
    const fast = parseEmitInputFast(value);
    if (fast) return fast;
    const parsed = EmitSignalInput.safeParse(value);
    if (parsed.success) return parsed.data;
    for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
    return z.NEVER;
  })
  .meta(emitSignalJsonSchema);

const isShortText = (value: unknown): value is string =>
  typeof value === 'string' && value.length >= 1 && value.length <= 256 && isStorableText(value);

/**
 * The common, well-formed input accepted without zod, which costs more than
 * the rest of validation on the batch path. Strictly narrower than
 * `EmitSignalInput`: whatever this does not accept (an `occurred_at`, a bad
 * field) goes through the schema, which also words the errors.
 */
export function parseEmitInputFast(raw: unknown): EmitSignalInput | undefined {
  if (!isPlainObject(raw)) return undefined;
  const { type, subject, payload, dedupe_key, occurred_at, correlation_id, causation_id, schema_version } = raw;
  if (typeof type !== 'string' || type.length > 200 || !SIGNAL_TYPE_PATTERN.test(type)) return undefined;
  if (subject != null && !isShortText(subject)) return undefined;
  if (!isPlainObject(payload) || payloadProblem(payload) !== undefined) return undefined;
  if (dedupe_key !== undefined && !isShortText(dedupe_key)) return undefined;
  if (occurred_at !== undefined) return undefined;
  if (correlation_id != null && !isShortText(correlation_id)) return undefined;
  if (causation_id != null && !isShortText(causation_id)) return undefined;
  if (schema_version !== undefined && !(Number.isInteger(schema_version) && (schema_version as number) >= 1 && (schema_version as number) <= 1000)) {
    return undefined;
  }
  return {
    type,
    subject: subject as string | null | undefined,
    payload,
    dedupe_key: dedupe_key as string | undefined,
    correlation_id: correlation_id as string | null | undefined,
    causation_id: causation_id as string | null | undefined,
    schema_version: schema_version as number | undefined,
  };
}

/**
 * A timestamptz as the API shows it (UTC, milliseconds, `Z`), formatted by
 * the database: rows then go out as they come in, with no Date round trip.
 */
export function isoTimestamp(column: string): string {
  return `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/** Columns every read selects, with the position computed from (tx_id, seq). */
export const SIGNAL_COLUMNS = `
  lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0') as position,
  id, type, schema_version, subject, payload, actor, source, dedupe_key, payload_hash,
  correlation_id, causation_id, causation_depth, installation_id, trace,
  ${isoTimestamp('occurred_at')} as occurred_at, ${isoTimestamp('recorded_at')} as recorded_at`;

export interface SignalRow {
  position: string;
  id: string;
  type: string;
  schema_version: number;
  subject: string | null;
  payload: Record<string, unknown>;
  actor: Actor;
  source: string;
  dedupe_key: string;
  payload_hash: string;
  /** Read only to resolve a repeated dedupe key; null on signals stored before requests were hashed. */
  request_hash?: string | null;
  correlation_id: string | null;
  causation_id: string | null;
  causation_depth: number;
  installation_id: string | null;
  trace: string | null;
  /** ISO 8601, UTC. */
  occurred_at: string;
  recorded_at: string;
}

/** What is known of a signal before it is appended. */
export type SignalFacts = Pick<SignalRow, 'type' | 'payload'>;

/** A signal as the API shows it: the causation depth and the request hash stay internal. */
export type Signal = Omit<SignalRow, 'causation_depth' | 'request_hash'>;

export function toSignal(row: SignalRow): Signal {
  return {
    id: row.id,
    position: row.position,
    type: row.type,
    schema_version: row.schema_version,
    subject: row.subject,
    payload: row.payload,
    actor: row.actor,
    source: row.source,
    dedupe_key: row.dedupe_key,
    payload_hash: row.payload_hash,
    correlation_id: row.correlation_id,
    causation_id: row.causation_id,
    installation_id: row.installation_id,
    trace: row.trace,
    occurred_at: row.occurred_at,
    recorded_at: row.recorded_at,
  };
}

/** A decoded position: decimal strings, ready to bind as xid8 and bigint. */
export interface Cursor {
  txId: string;
  seq: string;
}

export const BEGINNING: Cursor = { txId: '0', seq: '0' };

/** One half of a position: a decimal xid8 or sequence as 16 hex digits. */
export const positionHalf = (decimal: string): string => BigInt(decimal).toString(16).padStart(16, '0');

export function encodeCursor(cursor: Cursor): string {
  return positionHalf(cursor.txId) + positionHalf(cursor.seq);
}

/** Parses a client's cursor; `0` means the beginning of the stream. */
export function decodeCursor(value: string, field = 'after'): Cursor {
  if (value === '0') return BEGINNING;
  // The seq half is a bigint: past 2^63-1 the query would fail out of range (a 500).
  if (!/^[0-9a-f]{16}[0-7][0-9a-f]{15}$/.test(value)) {
    throw new DomainError('validation_failed', 'invalid cursor', [
      { path: field, message: 'not a cursor returned by this API' },
    ]);
  }
  return { txId: BigInt(`0x${value.slice(0, 16)}`).toString(), seq: BigInt(`0x${value.slice(16)}`).toString() };
}

/**
 * A type filter: exact types and `prefix.*` patterns, comma separated.
 * Returns undefined for no filter.
 */
export interface TypeFilter {
  exact: string[];
  prefixes: string[];
}

export function parseTypeFilter(value: string | undefined, field = 'types'): TypeFilter | undefined {
  if (!value) return undefined;
  const filter: TypeFilter = { exact: [], prefixes: [] };
  for (const part of value.split(',').map((item) => item.trim()).filter(Boolean)) {
    if (part.endsWith('.*') && SIGNAL_TYPE_PATTERN.test(`${part.slice(0, -2)}.x`)) {
      // A LIKE pattern: `_` is legal in a type but a wildcard to LIKE, so
      // `a_b.*` would match `axb.created` unless escaped (`\` is LIKE's escape).
      filter.prefixes.push(`${part.slice(0, -1).replace(/[\\%_]/g, '\\$&')}%`);
    } else if (SIGNAL_TYPE_PATTERN.test(part)) {
      filter.exact.push(part);
    } else {
      throw new DomainError('validation_failed', 'invalid type filter', [
        { path: field, message: `${JSON.stringify(part)} is neither a type nor a prefix.*` },
      ]);
    }
  }
  return filter.exact.length + filter.prefixes.length ? filter : undefined;
}

const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** Keeps a W3C traceparent only when well formed. */
export function cleanTraceparent(value: string | undefined | null): string | null {
  if (!value) return null;
  const trimmed = value.trim().toLowerCase();
  return TRACEPARENT.test(trimmed) && !trimmed.startsWith('ff') ? trimmed : null;
}
