import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DomainError } from '../core/errors.ts';
import { Manifest, type WebhookSpec } from '../packages/manifest.ts';
import { readEvent } from './read-event.ts';

const manifest = (name: string, version = '1.0.0') =>
  Manifest.parse(JSON.parse(readFileSync(new URL(`../../packages-registry/${name}/${version}/manifest.json`, import.meta.url), 'utf8')));
const stripe = manifest('stripe-revenue').webhook!;
const relay = manifest('webhook-relay').webhook!;

describe('reading an event as the manifest says', () => {
  it('stripe-revenue: id, type, occurred-at from created, subject from the customer, payload the object', () => {
    const body = { id: 'evt_9', type: 'charge.succeeded', created: 1_700_000_000, data: { object: { id: 'ch_1', object: 'charge', amount: 1200, customer: 'cus_7' } } };
    expect(readEvent(stripe, { body, headers: {}, config: {} })).toEqual({
      id: 'evt_9',
      type: 'stripe.charge.succeeded',
      occurredAt: '2023-11-14T22:13:20.000Z',
      subject: 'cus_7',
      payload: { id: 'ch_1', object: 'charge', amount: 1200, customer: 'cus_7' },
    });
  });

  it('stripe-revenue 1.1.0: an early fraud warning, its subject the warned charge', () => {
    const object = { id: 'issfr_1', object: 'radar.early_fraud_warning', actionable: true, charge: 'ch_9', fraud_type: 'made_with_stolen_card', payment_intent: 'pi_9' };
    const body = { id: 'evt_efw', type: 'radar.early_fraud_warning.created', created: 1_700_000_000, data: { object } };
    expect(readEvent(manifest('stripe-revenue', '1.1.0').webhook!, { body, headers: {}, config: {} })).toEqual({
      id: 'evt_efw',
      type: 'stripe.radar.early_fraud_warning.created',
      occurredAt: '2023-11-14T22:13:20.000Z',
      subject: 'ch_9',
      payload: object,
    });
    // 1.0.0 does not take it.
    expect(readEvent(stripe, { body, headers: {}, config: {} })).toBeNull();
  });

  it('stripe-revenue: an event type it does not take is read as nothing', () => {
    const body = { id: 'evt_1', type: 'invoice.paid', created: 1, data: { object: { id: 'in_1' } } };
    expect(readEvent(stripe, { body, headers: {}, config: {} })).toBeNull();
  });

  it('webhook-relay: falls back to a header for the id, no occurred-at (the log stamps the arrival), and builds its payload', () => {
    const event = readEvent(relay, { body: { type: 'order.paid', n: 1.5 }, headers: { 'x-event-id': 'e-1' }, config: {} });
    expect(event).toEqual({
      id: 'e-1',
      type: 'relay.event.received',
      subject: null,
      occurredAt: null,
      payload: { event_id: 'e-1', event_type: 'order.paid', data: { type: 'order.paid', n: 1.5 } },
    });
  });

  it('an expression failing on this body is a validation error, not a crash', () => {
    const spec: WebhookSpec = { ...stripe, when: undefined };
    const attempt = () => readEvent(spec, { body: { nothing: true }, headers: {}, config: {} });
    expect(attempt).toThrow(DomainError);
    expect(attempt).toThrow(/webhook\.event\.id/);
  });

  it('an occurred-at that is not a time is refused', () => {
    const spec: WebhookSpec = { ...stripe, when: undefined, event: { ...stripe.event, occurred_at: 'body.created' } };
    expect(() => readEvent(spec, { body: { id: 'e', type: 't', created: 'yesterday', data: { object: { id: 'x', object: 'charge' } } }, headers: {}, config: {} })).toThrow(/occurred_at/);
  });
});
