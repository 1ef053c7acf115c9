import { describe, expect, it } from 'vitest';
import type { Actor } from '../signals/actor.ts';
import type { Decision } from '../policy/model.ts';
import type { SignalRow } from '../signals/model.ts';
import { signalRow } from '../../test/support/signal-row.ts';
import type { DirectiveProposed, DirectiveRow, DirectiveStatus } from './model.ts';
import { directiveIdOf, evolveDirective } from './reducer.ts';

const ANA: Actor = { type: 'human', id: 'ana@acme.test' };
const BEN: Actor = { type: 'human', id: 'ben@acme.test' };
const PLATFORM: Actor = { type: 'system', id: 'signalbus' };
const ID = 'dir_0000000001aaaaaaaaaaaaaaaa';

let clock = 0;
/** A stored signal; each gets a later `recorded_at`, as the log would give it. */
function signal(type: string, payload: object, extra: Partial<SignalRow> = {}): SignalRow {
  clock += 1;
  return signalRow(type, payload, { second: clock, subject: `directive:${ID}`, actor: PLATFORM, correlation_id: 'sig_origin', ...extra });
}

const decision = (effect: Decision['effect']): Decision => ({ effect, rule: `rule-${effect}`, reason: `because ${effect}`, guards: [] });

function proposed(effect: Decision['effect'] = 'require_approval', overrides: Partial<DirectiveProposed> = {}, extra: Partial<SignalRow> = {}) {
  const payload: DirectiveProposed = {
    directive_id: ID,
    kind: 'gmail.send',
    params: { to: 'cy@example.com' },
    idempotency_key: 'idem-1',
    installation_id: 'ins_1',
    decision: decision(effect),
    estimated_cost_usd: 0.25,
    expires_at: effect === 'require_approval' ? '2025-01-04T00:00:00.000Z' : null,
    ...overrides,
  };
  return signal('directive.proposed', payload, { actor: ANA, source: 'api', causation_id: 'sig_cause', ...extra });
}
const approved = (reason: string | null = 'looks fine') => signal('directive.approved', { directive_id: ID, reason }, { actor: BEN, source: 'api' });
const rejected = (reason: string | null = 'no') => signal('directive.rejected', { directive_id: ID, reason }, { actor: BEN, source: 'api' });
const cancelled = (reason: string | null = 'changed my mind') => signal('directive.cancelled', { directive_id: ID, reason }, { actor: ANA, source: 'api' });
const expired = () => signal('directive.expired', { directive_id: ID, expired_at: '2025-01-04T00:00:00.000Z' });
const executing = (attempt: number) => signal('directive.executing', { directive_id: ID, execution_id: 'exe_1', attempt });
const succeeded = (result: unknown = { message_id: 'm1' }, cost_usd: number | null = 0.3) =>
  signal('directive.succeeded', { directive_id: ID, execution_id: 'exe_1', result, cost_usd });
const failed = (code = 'refused') => signal('directive.failed', { directive_id: ID, execution_id: 'exe_1', error: { code, message: `${code}!` } });

/** Given these signals folded from nothing, the row. */
const given = (...signals: SignalRow[]) => signals.reduce<DirectiveRow | null>(evolveDirective, null);

describe('directives reducer', () => {
  describe('directive.proposed', () => {
    it('creates the row from the payload and the signal', () => {
      const event = proposed('require_approval');
      expect(given(event)).toEqual({
        id: ID,
        kind: 'gmail.send',
        params: { to: 'cy@example.com' },
        idempotency_key: 'idem-1',
        actor: ANA,
        causation_id: 'sig_cause',
        correlation_id: 'sig_origin',
        installation_id: 'ins_1',
        status: 'awaiting_approval',
        decision: decision('require_approval'),
        estimated_cost_usd: 0.25,
        cost_usd: null,
        result: null,
        error: null,
        attempts: 0,
        expires_at: '2025-01-04T00:00:00.000Z',
        decided_by: null,
        decision_reason: null,
        proposed_at: event.recorded_at,
        updated_at: event.recorded_at,
      } satisfies DirectiveRow);
    });

    it.each([
      ['allow', 'approved'],
      ['require_approval', 'awaiting_approval'],
      ['deny', 'rejected'],
    ] as const)('a %s decision starts it %s', (effect, status) => {
      expect(given(proposed(effect))!.status).toBe(status);
    });

    it('proposed twice keeps the first', () => {
      const first = given(proposed('require_approval'));
      const second = evolveDirective(first, proposed('allow', { kind: 'stripe.refund.create', params: { amount: 5 } }, { actor: BEN }));
      expect(second).toBe(first);
    });
  });

  describe('decisions', () => {
    it('approved records who decided and why', () => {
      const event = approved('ok by me');
      expect(given(proposed(), event)).toMatchObject({
        status: 'approved',
        decided_by: BEN,
        decision_reason: 'ok by me',
        updated_at: event.recorded_at,
      });
    });

    it('rejected records who decided and why', () => {
      expect(given(proposed(), rejected('too costly'))).toMatchObject({ status: 'rejected', decided_by: BEN, decision_reason: 'too costly' });
    });

    it('a missing reason is null', () => {
      expect(given(proposed(), signal('directive.approved', { directive_id: ID }, { actor: BEN }))!.decision_reason).toBeNull();
    });

    it('cancelled ends a wait or an approval before execution', () => {
      expect(given(proposed(), cancelled())).toMatchObject({ status: 'cancelled', decided_by: ANA, decision_reason: 'changed my mind' });
      expect(given(proposed('allow'), cancelled())).toMatchObject({ status: 'cancelled', decided_by: ANA });
    });

    it('expired ends the wait without a decider', () => {
      const event = expired();
      expect(given(proposed(), event)).toMatchObject({ status: 'expired', decided_by: null, updated_at: event.recorded_at });
    });
  });

  describe('execution', () => {
    it('executing counts the attempt', () => {
      expect(given(proposed('allow'), executing(1))).toMatchObject({ status: 'executing', attempts: 1 });
      expect(given(proposed('allow'), executing(1), executing(2))).toMatchObject({ status: 'executing', attempts: 2 });
    });

    it('succeeded records the result and cost', () => {
      const event = succeeded({ id: 'ch_1' }, 0.42);
      expect(given(proposed('allow'), executing(1), event)).toMatchObject({
        status: 'succeeded',
        result: { id: 'ch_1' },
        cost_usd: 0.42,
        error: null,
        attempts: 1,
        updated_at: event.recorded_at,
      });
    });

    it('succeeded without result or cost stores nulls', () => {
      const bare = signal('directive.succeeded', { directive_id: ID, execution_id: 'exe_1' });
      expect(given(proposed('allow'), executing(1), bare)).toMatchObject({ status: 'succeeded', result: null, cost_usd: null });
    });

    it('failed records the error', () => {
      expect(given(proposed('allow'), executing(1), failed('needs_reauthorization'))).toMatchObject({
        status: 'failed',
        error: { code: 'needs_reauthorization', message: 'needs_reauthorization!' },
      });
    });
  });

  describe('invalid transitions are ignored', () => {
    // The lifecycle as ARCHITECTURE.md states it, written out independently of the reducer.
    const ALLOWED: Record<DirectiveStatus, string[]> = {
      awaiting_approval: ['directive.approved', 'directive.rejected', 'directive.cancelled', 'directive.expired'],
      approved: ['directive.cancelled', 'directive.executing', 'directive.succeeded', 'directive.failed'],
      executing: ['directive.executing', 'directive.succeeded', 'directive.failed'],
      rejected: [],
      cancelled: [],
      expired: [],
      succeeded: [],
      failed: [],
    };
    const reach: Record<DirectiveStatus, () => SignalRow[]> = {
      awaiting_approval: () => [proposed()],
      approved: () => [proposed(), approved()],
      rejected: () => [proposed('deny')],
      cancelled: () => [proposed(), cancelled()],
      expired: () => [proposed(), expired()],
      executing: () => [proposed('allow'), executing(1)],
      succeeded: () => [proposed('allow'), executing(1), succeeded()],
      failed: () => [proposed('allow'), executing(1), failed()],
    };
    const events: Record<string, () => SignalRow> = {
      'directive.approved': () => approved(),
      'directive.rejected': () => rejected(),
      'directive.cancelled': () => cancelled(),
      'directive.expired': () => expired(),
      'directive.executing': () => executing(2),
      'directive.succeeded': () => succeeded(),
      'directive.failed': () => failed(),
    };
    const cases = (Object.keys(reach) as DirectiveStatus[]).flatMap((status) =>
      Object.keys(events).map((type) => [status, type, ALLOWED[status].includes(type)] as const),
    );

    it.each(cases)('from %s, %s (allowed: %s)', (status, type, allowed) => {
      const before = given(...reach[status]());
      expect(before!.status).toBe(status);
      const after = evolveDirective(before, events[type]!());
      if (allowed) expect(after).not.toBe(before);
      else expect(after).toBe(before);
    });

    it('a transition for a directive never proposed leaves no row', () => {
      expect(given(approved(), executing(1), succeeded())).toBeNull();
    });

    it('an unknown directive.* type changes nothing', () => {
      const before = given(proposed());
      expect(evolveDirective(before, signal('directive.reminded', { directive_id: ID }))).toBe(before);
    });
  });

  it('directiveIdOf reads the payload, null when absent', () => {
    expect(directiveIdOf(approved())).toBe(ID);
    expect(directiveIdOf(signal('directive.approved', { reason: 'x' }))).toBeNull();
    expect(directiveIdOf(signal('directive.approved', { directive_id: 7 }))).toBeNull();
  });
});
