/**
 * Circuit breakers for endpoint-addressed executors. A run of consecutive
 * endpoint faults (retryable failures: timeouts, 5xx, 429) opens the circuit
 * (`webhook.endpoint.disabled`); while open, executions of that endpoint are
 * deferred without calling it. After the cool-down one directive probes it
 * (`webhook.endpoint.probing` half-opens it and holds off the others); its
 * success closes the circuit (`webhook.endpoint.enabled`), its failure opens
 * it again. The row is the fold of those signals and of the execution
 * outcomes that name the circuit; the decisions are taken under its row lock.
 */
import type { Queryable } from '../db/client.ts';
import type { Tx } from '../db/transaction.ts';
import type { CircuitPolicy } from '../executors/registry.ts';
import { keyedProjection } from '../projections/keyed.ts';
import { isoTimestamp, type SignalRow } from '../signals/model.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import type { EmitDeps } from '../signals/emit.ts';
import { emitSystem, type LifecycleContext, type SystemSignal } from './store.ts';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitRow {
  id: string;
  state: CircuitState;
  failures: number;
  retry_at: string | null;
  updated_at: string;
}

/** Carried by execution outcome signals of an executor with a circuit. */
export interface CircuitOutcome {
  circuit?: string;
  /** True when the failure counts against the endpoint's health. */
  endpoint_fault?: boolean;
}

const TRANSITIONS = ['webhook.endpoint.disabled', 'webhook.endpoint.probing', 'webhook.endpoint.enabled'];

function circuitOf(signal: SignalRow): string | null {
  const payload = signal.payload as Record<string, unknown>;
  if (TRANSITIONS.includes(signal.type)) return typeof payload.endpoint === 'string' ? payload.endpoint : null;
  if (signal.type === 'execution.succeeded' || signal.type === 'execution.failed') {
    return typeof payload.circuit === 'string' ? payload.circuit : null;
  }
  return null;
}

export function evolveCircuit(row: CircuitRow | null, signal: SignalRow): CircuitRow | null {
  const id = circuitOf(signal);
  if (id === null) return row;
  const base: CircuitRow = row ?? { id, state: 'closed', failures: 0, retry_at: null, updated_at: signal.recorded_at };
  const at = signal.recorded_at;
  const payload = signal.payload as Record<string, unknown>;
  switch (signal.type) {
    case 'execution.succeeded':
      return { ...base, failures: 0, updated_at: at };
    case 'execution.failed':
      // An answer that is the caller's fault (a 4xx) still shows the endpoint alive.
      return { ...base, failures: payload.endpoint_fault === true ? base.failures + 1 : 0, updated_at: at };
    case 'webhook.endpoint.disabled':
      return { ...base, state: 'open', retry_at: payload.retry_at as string, updated_at: at };
    case 'webhook.endpoint.probing':
      return { ...base, state: 'half_open', retry_at: payload.retry_at as string, updated_at: at };
    case 'webhook.endpoint.enabled':
      return { ...base, state: 'closed', failures: 0, retry_at: null, updated_at: at };
    default:
      return row;
  }
}

export const circuitsProjection = keyedProjection<CircuitRow>({
  name: 'circuits',
  table: 'circuits',
  columns: ['id', 'state', 'failures', 'retry_at', 'updated_at'],
  handles: (type) => type === 'execution.succeeded' || type === 'execution.failed' || TRANSITIONS.includes(type),
  keyOf: circuitOf,
  evolve: evolveCircuit,
});

function lockCircuits(db: Queryable, tenant: TenantRef, ids: string[]): Promise<CircuitRow[]> {
  return db<CircuitRow[]>`
    select id, state, failures, ${db.unsafe(isoTimestamp('retry_at'))} as retry_at, ${db.unsafe(isoTimestamp('updated_at'))} as updated_at
      from ${db(`${tenant.schema}.circuits`)} where id = any(${ids}::text[]) order by id for update`;
}

export type Admission = { admitted: true; probing?: SystemSignal } | { admitted: false; until: Date; probing?: undefined };

export interface CircuitGate {
  /**
   * Whether a directive may call its endpoint now. Past an open circuit's
   * cool-down the first claimant becomes the probe (its `probing` signal is
   * to be emitted with the claim); everyone else waits for its verdict.
   */
  admit(input: { endpoint: string; directiveId: string; policy: CircuitPolicy<unknown>; now: Date }): Admission;
}

/** Locks the circuits of `endpoints` (in id order) for a claiming transaction and decides admissions against them. */
export async function circuitGate(tx: Tx, tenant: TenantRef, endpoints: string[]): Promise<CircuitGate> {
  const keys = [...new Set(endpoints)].sort();
  const rows = keys.length === 0 ? [] : await lockCircuits(tx.sql, tenant, keys);
  const state = new Map(rows.map((row) => [row.id, row]));
  return {
    admit({ endpoint, directiveId, policy, now }) {
      const row = state.get(endpoint);
      if (!row || row.state === 'closed') return { admitted: true };
      const retryAt = new Date(row.retry_at ?? 0);
      if (now < retryAt) return { admitted: false, until: retryAt };
      // The probe's own deadline: should its worker die, another probe follows.
      const probeUntil = new Date(now.getTime() + policy.cooldownMs).toISOString();
      const probing: SystemSignal = {
        type: 'webhook.endpoint.probing',
        subject: `endpoint:${endpoint}`,
        payload: { endpoint, directive_id: directiveId, retry_at: probeUntil },
        dedupe_key: `endpoint:${endpoint}:probing:${directiveId}:${row.updated_at}`,
      };
      state.set(endpoint, { ...row, state: 'half_open', retry_at: probeUntil });
      return { admitted: true, probing };
    },
  };
}

/**
 * After an outcome naming the circuit was recorded in `tx`: opens it when
 * the run of faults reaches the threshold or a probe failed, closes it when
 * the endpoint answered (`healthy`) while it was not closed.
 */
export async function settleCircuit(
  emit: EmitDeps,
  ctx: LifecycleContext,
  tx: Tx,
  { endpoint, healthy, policy, now }: { endpoint: string; healthy: boolean; policy: CircuitPolicy<unknown>; now: Date },
): Promise<void> {
  const [row] = await lockCircuits(tx.sql, ctx.tenant, [endpoint]);
  if (!row) return;
  const subject = `endpoint:${endpoint}`;
  if (healthy) {
    if (row.state === 'closed') return;
    await emitSystem(emit, ctx, tx, {
      type: 'webhook.endpoint.enabled',
      subject,
      payload: { endpoint },
      dedupe_key: `endpoint:${endpoint}:enabled:${row.updated_at}`,
    });
    return;
  }
  const tripped = row.state === 'half_open' || (row.state === 'closed' && row.failures >= policy.failureThreshold);
  if (!tripped || row.failures === 0) return;
  await emitSystem(emit, ctx, tx, {
    type: 'webhook.endpoint.disabled',
    subject,
    payload: { endpoint, failures: row.failures, retry_at: new Date(now.getTime() + policy.cooldownMs).toISOString() },
    dedupe_key: `endpoint:${endpoint}:disabled:${row.updated_at}`,
  });
}
