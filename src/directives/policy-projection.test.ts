import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Actor } from '../signals/actor.ts';
import type { SignalRow } from '../signals/model.ts';
import { evolvePolicy, type PolicyRow, type PolicyUpdated } from './policy-projection.ts';
import { signalRow } from '../../test/support/signal-row.ts';

const ANA: Actor = { type: 'human', id: 'ana@acme.test' };
const BEN: Actor = { type: 'human', id: 'ben@acme.test' };

function signal(type: string, payload: object, { actor = ANA, second = 0 }: { actor?: Actor; second?: number } = {}): SignalRow {
  return signalRow(type, payload, { second, actor, source: 'api', dedupe_key: `policy:${second}` });
}

const rulesOf = (version: number) => [{ id: `rule-v${version}`, match: '*', effect: 'allow' }];
const GUARDS = { rate_limits: [], budgets: [], lists: [] };
const updated = (version: number, options: { actor?: Actor; second?: number } = {}) =>
  signal('policy.updated', { version, rules: rulesOf(version), guards: GUARDS } satisfies PolicyUpdated, { second: version, ...options });

const given = (...signals: SignalRow[]) => signals.reduce<PolicyRow | null>(evolvePolicy, null);

describe('policies reducer', () => {
  it('the first update creates the current row', () => {
    const event = updated(1, { actor: BEN });
    expect(given(event)).toEqual({
      id: 'current',
      version: 1,
      rules: rulesOf(1),
      guards: GUARDS,
      updated_by: BEN,
      updated_at: event.recorded_at,
    } satisfies PolicyRow);
  });

  it('a newer version replaces it', () => {
    expect(given(updated(1), updated(2, { actor: BEN }))).toMatchObject({ version: 2, rules: rulesOf(2), updated_by: BEN });
  });

  it('an older or equal version changes nothing', () => {
    const current = given(updated(1), updated(3));
    expect(evolvePolicy(current, updated(2))).toBe(current);
    expect(evolvePolicy(current, updated(3, { actor: BEN, second: 40 }))).toBe(current);
  });

  it('other signal types change nothing', () => {
    const current = given(updated(1));
    expect(evolvePolicy(current, signal('policy.simulated', { version: 9 }))).toBe(current);
    expect(evolvePolicy(null, signal('policy.simulated', { version: 9 }))).toBeNull();
  });

  it('versions only move forward: any fold order ends at the highest version', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 12 }), (versions) => {
        const row = given(...versions.map((version) => updated(version)));
        const highest = Math.max(...versions);
        expect(row).toEqual(given(updated(highest)));
      }),
    );
  });
});
