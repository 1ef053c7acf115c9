/**
 * The circuit breaker of endpoint-addressed executors, through the worker:
 * consecutive endpoint faults open the circuit, an open circuit defers calls
 * without spending attempts, one probe half-opens it after the cool-down and
 * decides, and answers that are the caller's fault keep it closed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import type { ExecuteResult, Executor } from '../../src/executors/registry.ts';
import { updatePolicy } from '../../src/directives/policy-store.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';

type Mode = 'fault' | 'ok' | 'refused' | 'hold';
const COOLDOWN_MS = 400;
const modes = new Map<string, Mode>();
const calls: Array<{ endpoint: string; directiveId: string; at: number }> = [];
let releaseHeld: (() => void) | undefined;

const probeExecutor: Executor<{ endpoint: string; n: number }> = {
  kinds: ['probe.deliver'],
  params: z.object({ endpoint: z.string(), n: z.number() }),
  estimateCostUsd: () => 0,
  honorsIdempotencyKey: true,
  maxAttempts: 1,
  circuit: { key: (_kind, params) => params.endpoint, failureThreshold: 3, cooldownMs: COOLDOWN_MS },
  async execute({ params, directiveId }): Promise<ExecuteResult> {
    calls.push({ endpoint: params.endpoint, directiveId, at: Date.now() });
    const mode = modes.get(params.endpoint) ?? 'ok';
    if (mode === 'hold') await new Promise<void>((resolve) => (releaseHeld = resolve));
    if (mode === 'fault') return { outcome: 'retryable', error: { code: 'http_503', message: 'unavailable' } };
    if (mode === 'refused') return { outcome: 'permanent', error: { code: 'http_400', message: 'bad request' } };
    return { outcome: 'succeeded', result: { status: 200 } };
  },
};

let t: TestApp;
let org: Tenant;
let counter = 0;

beforeAll(async () => {
  t = await createTestApp({ executors: [probeExecutor], env: { SIGNALBUS_EXECUTOR_RETRY_BASE_MS: '10' } });
  org = await t.createOrg('circuit');
  await updatePolicy(t.app.deps.bus.emit, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'system' },
    input: { rules: [{ id: 'allow', match: 'probe.*', effect: 'allow' }] },
  });
  await t.startWorker();
});
afterAll(() => t.close());

async function deliver(endpoint: string) {
  const { directive } = await proposeDirective(t.app.deps.bus.directives, {
    ctx: { tenant: org, actor: PLATFORM_ACTOR, source: 'api' },
    input: { kind: 'probe.deliver', params: { endpoint, n: ++counter }, idempotency_key: `circuit-${counter}` },
  });
  return directive.id;
}

const finished = (id: string) =>
  waitFor(async () => {
    const directive = await getDirective(t.app.deps.sql, org, id);
    return directive.status === 'succeeded' || directive.status === 'failed' ? directive : undefined;
  }, 20_000, `${id} to finish`);

const transitions = async (endpoint: string) =>
  (
    await t.app.deps.sql<{ type: string }[]>`
      select type from org_circuit.signals where subject = ${`endpoint:${endpoint}`} order by tx_id, seq`
  ).map((row) => row.type.replace('webhook.endpoint.', ''));

const circuit = async (endpoint: string) =>
  (await t.app.deps.sql<{ state: string; failures: number }[]>`select state, failures from org_circuit.circuits where id = ${endpoint}`)[0];

const callsTo = (endpoint: string) => calls.filter((call) => call.endpoint === endpoint);

async function trip(endpoint: string) {
  modes.set(endpoint, 'fault');
  for (let i = 0; i < 3; i++) await finished(await deliver(endpoint));
  expect(await circuit(endpoint)).toEqual({ state: 'open', failures: 3 });
}

describe('an endpoint circuit', () => {
  it('opens after consecutive faults, defers calls while open, and closes after a successful probe', async () => {
    const endpoint = 'https://flaky.example/hook';
    modes.set(endpoint, 'fault');
    await finished(await deliver(endpoint));
    await finished(await deliver(endpoint));
    expect(await transitions(endpoint)).toEqual([]);
    expect(await circuit(endpoint)).toEqual({ state: 'closed', failures: 2 });
    await finished(await deliver(endpoint));
    expect(await circuit(endpoint)).toEqual({ state: 'open', failures: 3 });
    expect(await transitions(endpoint)).toEqual(['disabled']);

    modes.set(endpoint, 'ok');
    const waiting = await deliver(endpoint);
    const openedAt = Date.now();
    const before = callsTo(endpoint).length;
    const done = await finished(waiting);
    expect(done.status).toBe('succeeded');
    expect(done.attempts).toBe(1);
    // It waited out the cool-down instead of calling the open endpoint.
    const probe = callsTo(endpoint).slice(before);
    expect(probe).toHaveLength(1);
    expect(probe[0]!.at - openedAt).toBeGreaterThanOrEqual(COOLDOWN_MS - 150);
    expect(await transitions(endpoint)).toEqual(['disabled', 'probing', 'enabled']);
    expect(await circuit(endpoint)).toEqual({ state: 'closed', failures: 0 });
  });

  it('opens again when the probe fails', async () => {
    const endpoint = 'https://down.example/hook';
    await trip(endpoint);
    const probe = await finished(await deliver(endpoint));
    expect(probe.status).toBe('failed');
    expect(await transitions(endpoint)).toEqual(['disabled', 'probing', 'disabled']);
    expect((await circuit(endpoint))!.state).toBe('open');
  });

  it('lets one probe through while the others wait for its verdict', async () => {
    const endpoint = 'https://single-probe.example/hook';
    await trip(endpoint);
    modes.set(endpoint, 'hold');
    const before = callsTo(endpoint).length;
    const ids = await Promise.all(Array.from({ length: 4 }, () => deliver(endpoint)));
    await waitFor(() => callsTo(endpoint).length > before && releaseHeld !== undefined, 10_000, 'the probe call');
    // Past another cool-down, still only the probe has called.
    await new Promise((resolve) => setTimeout(resolve, COOLDOWN_MS / 2));
    expect(callsTo(endpoint).length - before).toBe(1);
    modes.set(endpoint, 'ok');
    releaseHeld!();
    for (const id of ids) expect((await finished(id)).status).toBe('succeeded');
    expect(callsTo(endpoint).length - before).toBe(4);
    expect(await transitions(endpoint)).toEqual(['disabled', 'probing', 'enabled']);
  });

  it('counts only endpoint faults: refused requests keep it closed and reset the run', async () => {
    const endpoint = 'https://strict.example/hook';
    for (const mode of ['fault', 'fault', 'refused', 'fault', 'fault'] as const) {
      modes.set(endpoint, mode);
      await finished(await deliver(endpoint));
    }
    expect(await circuit(endpoint)).toEqual({ state: 'closed', failures: 2 });
    expect(await transitions(endpoint)).toEqual([]);
  });

  it('is per endpoint: another endpoint keeps working while one is open', async () => {
    await trip('https://broken.example/a');
    modes.set('https://healthy.example/b', 'ok');
    const healthy = await finished(await deliver('https://healthy.example/b'));
    expect(healthy.status).toBe('succeeded');
  });

  it("claims to a closed circuit do not wait on its row lock, which every recorded outcome takes", async () => {
    const endpoint = 'https://busy.example/hook';
    modes.set(endpoint, 'ok');
    await finished(await deliver(endpoint));
    expect((await circuit(endpoint))!.state).toBe('closed');
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    // Another transaction holds the row as an outcome being recorded would.
    const holder = t.app.deps.sql.begin(async (tx) => {
      await tx`select 1 from org_circuit.circuits where id = ${endpoint} for update`;
      locked();
      await released;
    });
    await isLocked;
    const before = callsTo(endpoint).length;
    try {
      await deliver(endpoint);
      await waitFor(() => callsTo(endpoint).length > before, 10_000, 'the call while the circuit row is locked');
    } finally {
      release();
      await holder;
    }
  });
});
