/**
 * The policies projection: `policy.updated` signals folded into the org's one
 * current policy row. Versions only move forward.
 */
import { keyedProjection } from '../projections/keyed.ts';
import type { Actor } from '../signals/actor.ts';
import type { SignalRow } from '../signals/model.ts';
import { systemSignalOf } from '../signals/system.ts';

export interface PolicyRow {
  id: 'current';
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
  updated_by: Actor;
  updated_at: string;
}

export interface PolicyUpdated {
  version: number;
  rules: unknown[];
  guards: Record<string, unknown>;
}

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'policy.updated': PolicyUpdated;
  }
}

export function evolvePolicy(row: PolicyRow | null, signal: SignalRow): PolicyRow | null {
  const event = systemSignalOf(signal, ['policy.updated']);
  if (!event) return row;
  const { version, rules, guards } = event.payload;
  // Versions only move forward: a stale update folded late changes nothing.
  if (row && row.version >= version) return row;
  return { id: 'current', version, rules, guards, updated_by: signal.actor, updated_at: signal.recorded_at };
}

export const policiesProjection = keyedProjection<PolicyRow>({
  name: 'policies',
  table: 'policies',
  columns: ['id', 'version', 'rules', 'guards', 'updated_by', 'updated_at'],
  handles: (type) => type === 'policy.updated',
  keyOf: () => 'current',
  evolve: evolvePolicy,
});
