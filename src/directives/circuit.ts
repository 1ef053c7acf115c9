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
import type { CircuitPolicy, Executor } from '../executors/registry.ts';
import { keyedProjection } from '../projections/keyed.ts';
import { isoTimestamp, type SignalRow } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import type { EmitDeps } from '../signals/emit.ts';
import { type Directive } from './store.ts';
import { emitSystem, type SystemSignal } from '../signals/system.ts';
import type { VerbContext } from '../signals/verb-context.ts';

export type CircuitState = 'closed' | 'open' | 'half_open';

export interface CircuitRow {
  id: string;
  state: CircuitState;
  /** Endpoint faults after the last healthy answer: `fault_positions.length`. */
  failures: number;
  retry_at: string | null;
  /** Position of the transition that set `state` and `retry_at`. */
  transition_position: string | null;
  /** Position of the last answer that showed the endpoint healthy. */
  healthy_position: string | null;
  /** Positions of the faults after it, the latest MAX_FAULTS kept. */
  fault_positions: string[];
  /** The latest position folded in, and when it was recorded. */
  position: string;
  updated_at: string;
}

/** Carried by execution outcome signals of an executor with a circuit. */
export interface CircuitOutcome {
  circuit?: string;
  /** True when the failure counts against the endpoint's health. */
  endpoint_fault?: boolean;
}

export interface EndpointDisabled {
  endpoint: string;
  failures: number;
  retry_at: string;
}
export interface EndpointProbing {
  endpoint: string;
  directive_id: string;
  retry_at: string;
}
export interface EndpointEnabled {
  endpoint: string;
}

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'webhook.endpoint.disabled': EndpointDisabled;
    'webhook.endpoint.probing': EndpointProbing;
    'webhook.endpoint.enabled': EndpointEnabled;
  }
}

const TRANSITIONS: readonly string[] = ['webhook.endpoint.disabled', 'webhook.endpoint.probing', 'webhook.endpoint.enabled'];

function circuitOf(signal: SignalRow): string | null {
  const payload = signal.payload as Record<string, unknown>;
  if (TRANSITIONS.includes(signal.type)) return typeof payload.endpoint === 'string' ? payload.endpoint : null;
  if (signal.type === 'execution.succeeded' || signal.type === 'execution.failed') {
    return typeof payload.circuit === 'string' ? payload.circuit : null;
  }
  return null;
}

const MAX_FAULTS = 64;

/**
 * The fold is order-insensitive: every part is decided by positions — the
 * latest transition wins, faults count only after the latest healthy answer.
 * Transactions of many directives fold into one circuit row, and the order
 * they take its lock need not be their order in the log; a rebuild, which
 * folds in log order, must still arrive at the same row.
 */
export function evolveCircuit(row: CircuitRow | null, signal: SignalRow): CircuitRow | null {
  const id = circuitOf(signal);
  if (id === null) return row;
  const at = signal.position;
  let next: CircuitRow = row ?? {
    id,
    state: 'closed',
    failures: 0,
    retry_at: null,
    transition_position: null,
    healthy_position: null,
    fault_positions: [],
    position: at,
    updated_at: signal.recorded_at,
  };
  const payload = signal.payload as Record<string, unknown>;
  const healthy = () => {
    if (next.healthy_position !== null && at <= next.healthy_position) return;
    next = { ...next, healthy_position: at, fault_positions: next.fault_positions.filter((fault) => fault > at) };
  };
  const fault = () => {
    if ((next.healthy_position !== null && at <= next.healthy_position) || next.fault_positions.includes(at)) return;
    next = { ...next, fault_positions: [...next.fault_positions, at].sort().slice(-MAX_FAULTS) };
  };
  const transition = (state: CircuitState, retryAt: string | null) => {
    if (next.transition_position !== null && at <= next.transition_position) return;
    next = { ...next, state, retry_at: retryAt, transition_position: at };
  };
  switch (signal.type) {
    case 'execution.succeeded':
      healthy();
      break;
    case 'execution.failed':
      // An answer that is the caller's fault (a 4xx) still shows the endpoint alive.
      if (payload.endpoint_fault === true) fault();
      else healthy();
      break;
    case 'webhook.endpoint.disabled':
      transition('open', payload.retry_at as string);
      break;
    case 'webhook.endpoint.probing':
      transition('half_open', payload.retry_at as string);
      break;
    case 'webhook.endpoint.enabled':
      transition('closed', null);
      healthy();
      break;
    default:
      return row;
  }
  return {
    ...next,
    failures: next.fault_positions.length,
    ...(at > next.position ? { position: at, updated_at: signal.recorded_at } : {}),
  };
}

export const circuitsProjection = keyedProjection<CircuitRow>({
  name: 'circuits',
  table: 'circuits',
  columns: ['id', 'state', 'failures', 'retry_at', 'transition_position', 'healthy_position', 'fault_positions', 'position', 'updated_at'],
  handles: (type) => type === 'execution.succeeded' || type === 'execution.failed' || TRANSITIONS.includes(type),
  keyOf: circuitOf,
  evolve: evolveCircuit,
});

function readCircuits(db: Queryable, tenant: Tenant, ids: string[], { lock }: { lock: boolean }): Promise<CircuitRow[]> {
  return db<CircuitRow[]>`
    select id, state, failures, ${db.unsafe(isoTimestamp('retry_at'))} as retry_at, transition_position, healthy_position,
           fault_positions, position, ${db.unsafe(isoTimestamp('updated_at'))} as updated_at
      from ${db(`${tenant.schema}.circuits`)} where id = any(${ids}::text[]) order by id ${db.unsafe(lock ? 'for update' : '')}`;
}

/** The ids of the tenant's circuits that are open or half-open. */
export async function circuitsNotClosed(db: Queryable, tenant: Tenant): Promise<Set<string>> {
  const rows = await db<{ id: string }[]>`select id from ${db(`${tenant.schema}.circuits`)} where state <> 'closed'`;
  return new Set(rows.map((row) => row.id));
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

/**
 * Decides admissions against the circuits of `endpoints` for a claiming
 * transaction. A closed circuit admits without changing, so it is read
 * without its lock: every outcome recorded for the endpoint writes its row,
 * and waiting on that lock would serialize claims behind outcomes. Circuits
 * not closed are locked (in id order) and read again, so one claimant alone
 * becomes the probe.
 */
export async function circuitGate(tx: Tx, tenant: Tenant, endpoints: string[]): Promise<CircuitGate> {
  const keys = [...new Set(endpoints)].sort();
  const read = keys.length === 0 ? [] : await readCircuits(tx.sql, tenant, keys, { lock: false });
  const notClosed = read.filter((row) => row.state !== 'closed').map((row) => row.id);
  const locked = notClosed.length === 0 ? [] : await readCircuits(tx.sql, tenant, notClosed, { lock: true });
  const state = new Map([...read, ...locked].map((row) => [row.id, row]));
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
        dedupe_key: `endpoint:${endpoint}:probing:${directiveId}:${row.position}`,
      };
      state.set(endpoint, { ...row, state: 'half_open', retry_at: probeUntil });
      return { admitted: true, probing };
    },
  };
}

/** What the outcomes recorded in one transaction showed of an endpoint: whether its last answer was healthy. */
export interface EndpointVerdict {
  endpoint: string;
  healthy: boolean;
  policy: CircuitPolicy<unknown>;
}

/**
 * After outcomes naming circuits were recorded in `tx`: opens each circuit
 * whose run of faults reached the threshold or whose probe failed, closes
 * each whose endpoint answered (`healthy`) while it was not closed. The
 * circuits are read and locked in one statement, in id order.
 */
export async function settleCircuits(emit: EmitDeps, ctx: VerbContext, tx: Tx, verdicts: EndpointVerdict[], now: Date): Promise<void> {
  if (verdicts.length === 0) return;
  const rows = await readCircuits(tx.sql, ctx.tenant, verdicts.map((verdict) => verdict.endpoint), { lock: true });
  const verdictOf = new Map(verdicts.map((verdict) => [verdict.endpoint, verdict]));
  const transitions: SystemSignal[] = [];
  for (const row of rows) {
    const { endpoint, healthy, policy } = verdictOf.get(row.id)!;
    const subject = `endpoint:${endpoint}`;
    if (healthy) {
      if (row.state !== 'closed') {
        transitions.push({ type: 'webhook.endpoint.enabled', subject, payload: { endpoint }, dedupe_key: `endpoint:${endpoint}:enabled:${row.position}` });
      }
      continue;
    }
    const tripped = row.state === 'half_open' || (row.state === 'closed' && row.failures >= policy.failureThreshold);
    if (!tripped || row.failures === 0) continue;
    transitions.push({
      type: 'webhook.endpoint.disabled',
      subject,
      payload: { endpoint, failures: row.failures, retry_at: new Date(now.getTime() + policy.cooldownMs).toISOString() },
      dedupe_key: `endpoint:${endpoint}:disabled:${row.position}`,
    });
  }
  if (transitions.length > 0) await emitSystem(emit, ctx, tx, transitions);
}

/** The circuit a directive's endpoint belongs to, when its executor declares one and its params name one. */
export function circuitKeyOf(executor: Executor, directive: Directive): string | null {
  if (!executor.circuit) return null;
  try {
    return executor.circuit.key(directive.kind, directive.params);
  } catch {
    return null;
  }
}
