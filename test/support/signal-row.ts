/**
 * Stored signals for reducer tests (given/when/then, no database): `second`
 * fixes the position, the ids and both timestamps, so later signals sort and
 * fold after earlier ones; anything else can be overridden.
 */
import type { SignalRow } from '../../src/signals/model.ts';

export function signalRow(type: string, payload: object, { second, ...overrides }: Partial<SignalRow> & { second: number }): SignalRow {
  const at = new Date(Date.UTC(2025, 0, 1, 0, 0, second)).toISOString();
  return {
    position: second.toString(16).padStart(32, '0'),
    id: `sig_${second}`,
    type,
    schema_version: 1,
    subject: null,
    payload: payload as Record<string, unknown>,
    actor: { type: 'system', id: 'signalbus' },
    source: 'system',
    dedupe_key: `key:${second}`,
    payload_hash: 'hash',
    correlation_id: null,
    causation_id: null,
    causation_depth: 0,
    installation_id: null,
    trace: null,
    occurred_at: at,
    recorded_at: at,
    ...overrides,
  };
}
