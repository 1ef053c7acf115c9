/**
 * Reading a verified delivery as the manifest says (`webhook.when`,
 * `webhook.event.*`): CEL over the parsed body, the lowercased headers, the
 * installation's config (and Pub/Sub's decoded `data`). Pure.
 */
import { DomainError } from '../core/errors.ts';
import type { WebhookSpec } from '../packages/manifest.ts';
import { compileManifestCel, type CelProgram, type CelResult } from '../packages/cel.ts';
import { toCel } from '../policy/cel.ts';

export interface InboundEvent {
  id: string;
  type: string;
  /** Null when the manifest reads none: the log stamps the arrival. */
  occurredAt: string | null;
  subject: string | null;
  payload: unknown;
}

export interface EventInput {
  body: unknown;
  headers: Readonly<Record<string, string>>;
  config: unknown;
  data?: unknown;
}

/** CEL → JSON: ints become numbers, timestamps RFC 3339 strings, objects plain. */
export function fromCel(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(fromCel);
  if (value instanceof Map) return Object.fromEntries([...value].map(([key, item]) => [String(key), fromCel(item)]));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, fromCel(item)]));
  }
  return value;
}

const unreadable = (field: string, why: string) => new DomainError('validation_failed', `the delivery cannot be read: webhook.event.${field} ${why}`);

// Compiled once per manifest expression: the registry's manifests live as long as the process.
const compiledBySpec = new WeakMap<WebhookSpec, Map<string, CelProgram>>();

function program(spec: WebhookSpec, expression: string, result: CelResult, field: string): CelProgram {
  let compiled = compiledBySpec.get(spec);
  if (!compiled) compiledBySpec.set(spec, (compiled = new Map()));
  const cached = compiled.get(field);
  if (cached) return cached;
  const outcome = compileManifestCel(expression, spec.scheme === 'google-pubsub' ? 'webhook-pubsub' : 'webhook', result);
  // The registry check compiled it already; failing here means a manifest that skipped it.
  if (!outcome.ok) throw new DomainError('internal', `webhook.${field}: ${outcome.message}`);
  compiled.set(field, outcome.program);
  return outcome.program;
}

function run(expression: string, spec: WebhookSpec, result: CelResult, field: string, variables: Record<string, unknown>): unknown {
  try {
    return program(spec, expression, result, field)(variables);
  } catch (error) {
    if (error instanceof DomainError) throw error;
    const summary = (error as { summary?: unknown }).summary;
    throw unreadable(field, typeof summary === 'string' ? `failed: ${summary}` : 'failed');
  }
}

function occurredAt(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) return value.toISOString();
  const seconds = typeof value === 'bigint' ? Number(value) : typeof value === 'number' ? value : undefined;
  const date = seconds !== undefined ? new Date(seconds * 1000) : typeof value === 'string' ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) throw unreadable('occurred_at', 'is not Unix seconds, an RFC 3339 string or a timestamp');
  return date.toISOString();
}

/**
 * The event a delivery carries, or null when `webhook.when` says to ignore
 * it. Throws `validation_failed` when an expression fails on this body or
 * yields the wrong type.
 */
export function readEvent(spec: WebhookSpec, input: EventInput): InboundEvent | null {
  const variables: Record<string, unknown> = {
    body: toCel(input.body),
    headers: toCel(input.headers),
    config: toCel(input.config ?? {}),
    ...(spec.scheme === 'google-pubsub' ? { data: toCel(input.data ?? null) } : {}),
  };
  if (spec.when !== undefined && run(spec.when, spec, 'bool', 'when', variables) !== true) return null;
  const { event } = spec;
  const id = run(event.id, spec, 'string', 'id', variables);
  if (typeof id !== 'string' || id.length === 0) throw unreadable('id', 'is not a non-empty string');
  const type = run(event.type, spec, 'string', 'type', variables);
  if (typeof type !== 'string') throw unreadable('type', 'is not a string');
  const subject = event.subject === undefined ? null : run(event.subject, spec, 'string', 'subject', variables);
  if (subject !== null && typeof subject !== 'string') throw unreadable('subject', 'is not a string');
  const when = event.occurred_at === undefined ? undefined : run(event.occurred_at, spec, 'occurred_at', 'occurred_at', variables);
  const payload = event.payload === undefined ? input.body : fromCel(run(event.payload, spec, 'any', 'payload', variables));
  return { id, type, subject, occurredAt: occurredAt(when), payload };
}
