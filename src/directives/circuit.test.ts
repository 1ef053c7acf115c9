import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { signalRow } from '../../test/support/signal-row.ts';
import type { SignalRow } from '../signals/model.ts';
import { evolveCircuit, type CircuitRow } from './circuit.ts';

const ENDPOINT = 'https://hooks.example';
type Step = 'fault' | 'refused' | 'ok' | 'disabled' | 'probing' | 'enabled';

function signalOf(step: Step, second: number): SignalRow {
  const retry_at = new Date(Date.UTC(2025, 0, 1, 1, 0, second)).toISOString();
  switch (step) {
    case 'fault':
      return signalRow('execution.failed', { circuit: ENDPOINT, endpoint_fault: true }, { second });
    case 'refused':
      return signalRow('execution.failed', { circuit: ENDPOINT, endpoint_fault: false }, { second });
    case 'ok':
      return signalRow('execution.succeeded', { circuit: ENDPOINT }, { second });
    case 'disabled':
      return signalRow('webhook.endpoint.disabled', { endpoint: ENDPOINT, retry_at }, { second });
    case 'probing':
      return signalRow('webhook.endpoint.probing', { endpoint: ENDPOINT, retry_at }, { second });
    case 'enabled':
      return signalRow('webhook.endpoint.enabled', { endpoint: ENDPOINT }, { second });
  }
}

const fold = (signals: SignalRow[]) => signals.reduce<CircuitRow | null>((row, signal) => evolveCircuit(row, signal), null);

describe('the circuit fold', () => {
  it('given faults, a refusal and a success: counts only the faults after the latest healthy answer', () => {
    const row = fold((['fault', 'fault', 'refused', 'fault', 'ok', 'fault', 'fault'] as const).map((step, i) => signalOf(step, i + 1)));
    expect(row).toMatchObject({ state: 'closed', failures: 2, healthy_position: signalOf('ok', 5).position });
  });

  it('given disabled, probing, enabled: ends closed with no faults', () => {
    const row = fold((['fault', 'fault', 'disabled', 'probing', 'enabled'] as const).map((step, i) => signalOf(step, i + 1)));
    expect(row).toMatchObject({ state: 'closed', failures: 0, retry_at: null });
  });

  it('arrives at the same row whatever order transactions take its lock in (rebuild equals live)', () => {
    const steps = fc.constantFrom<Step>('fault', 'refused', 'ok', 'disabled', 'probing', 'enabled');
    fc.assert(
      fc.property(
        fc.array(steps, { minLength: 1, maxLength: 40 }).chain((list) =>
          fc.tuple(fc.constant(list), fc.shuffledSubarray(list.map((_, i) => i), { minLength: list.length, maxLength: list.length })),
        ),
        ([list, order]) => {
          const inLogOrder = list.map((step, i) => signalOf(step, i + 1));
          expect(fold(order.map((i) => inLogOrder[i]!))).toEqual(fold(inLogOrder));
        },
      ),
    );
  });
});
