import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EmitSignalBody, EmitSignalInput, parseEmitInputFast } from './model.ts';

/** Values near every rule's edge, mixed with arbitrary JSON. */
const text = fc.oneof(
  fc.string({ maxLength: 3 }),
  fc.string({ minLength: 250, maxLength: 260 }),
  fc.constantFrom('', 'a', 'x\u0000y', '\uD800', '\uD83D\uDE00', 'customer:42', 'a'.repeat(256), 'a'.repeat(257)),
);
const field = fc.oneof(fc.constant(undefined), fc.constant(null), text, fc.integer(), fc.double(), fc.boolean(), fc.jsonValue());
/** Mostly a valid value, sometimes anything: both sides of every rule get exercised. */
const mostly = <T>(valid: fc.Arbitrary<T>) => fc.oneof({ weight: 8, arbitrary: valid }, { weight: 1, arbitrary: field });
const shortText = fc.string({ minLength: 1, maxLength: 20 });
const type = mostly(fc.constantFrom('shop.order.placed', 'a.b', `a.${'b'.repeat(198)}`, `a.${'b'.repeat(199)}`, 'Shop.order', 'a'));
const payload = mostly(
  fc.oneof(
    fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 3 })),
    fc.constantFrom({ note: 'nul \u0000 inside' }, { ['\uDC00']: 1 }, [], { nested: { deep: [1, { x: '\uD800' }] } }),
  ),
);
const version = mostly(fc.constantFrom(0, 1, 2, 1000, 1001, 1.5, Number.NaN, Number.POSITIVE_INFINITY));
const optional = <T>(value: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: mostly(value) });
const input = fc.record({
  type,
  payload,
  subject: optional(fc.oneof(shortText, text)),
  dedupe_key: optional(fc.oneof(shortText, text)),
  occurred_at: optional(fc.constant('2026-11-22T10:00:00Z')),
  correlation_id: optional(shortText),
  causation_id: optional(shortText),
  schema_version: optional(version),
  extra: optional(field),
});

describe('the fast path of emit input validation', () => {
  it('accepts only what the schema accepts, with the same meaning', () => {
    let accepted = 0;
    fc.assert(
      fc.property(input, (raw) => {
        const fast = parseEmitInputFast(raw);
        const schema = EmitSignalInput.safeParse(raw);
        if (fast === undefined) return;
        accepted++;
        expect(schema.success).toBe(true);
        const parsed = schema.data!;
        expect(fast.type).toBe(parsed.type);
        expect(fast.payload).toBe(parsed.payload);
        expect(fast.subject ?? null).toBe(parsed.subject ?? null);
        expect(fast.dedupe_key).toBe(parsed.dedupe_key);
        expect(fast.correlation_id ?? null).toBe(parsed.correlation_id ?? null);
        expect(fast.causation_id ?? null).toBe(parsed.causation_id ?? null);
        expect(fast.schema_version).toBe(parsed.schema_version);
        expect(fast.occurred_at).toBeUndefined();
      }),
      { numRuns: 5000 },
    );
    // The generator reaches the accepting side often enough to mean something.
    expect(accepted).toBeGreaterThan(300);
  });

  it('as the route body: accepts what the schema accepts, passes what it would, and words refusals as it does', () => {
    fc.assert(
      fc.property(input, (raw) => {
        const body = EmitSignalBody.safeParse(raw);
        const schema = EmitSignalInput.safeParse(raw);
        expect(body.success).toBe(schema.success);
        if (schema.success) expect(body.data).toEqual(schema.data);
        else expect(body.error!.issues.map(({ path, message }) => ({ path, message }))).toEqual(schema.error.issues.map(({ path, message }) => ({ path, message })));
      }),
      { numRuns: 2000 },
    );
  });

  it('takes the common well-formed signal', () => {
    const raw = { type: 'shop.order.placed', subject: 'customer:42', payload: { amount: 4200 }, dedupe_key: 'order-1', schema_version: 2 };
    expect(parseEmitInputFast(raw)).toMatchObject(raw);
    expect(parseEmitInputFast({ type: 'shop.order.placed', payload: {} })).toMatchObject({ type: 'shop.order.placed', payload: {} });
  });
});
