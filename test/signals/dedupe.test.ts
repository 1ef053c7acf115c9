import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let org: Tenant;
let operator: string;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('dedupe');
  operator = await t.createKey(org, 'operator');
});
afterAll(() => t.close());

const countByKey = async (key: string) => {
  const [row] = await t.app.deps.sql`select count(*)::int as n from org_dedupe.signals where dedupe_key = ${key}`;
  return row!.n as number;
};

describe('emit dedupe', () => {
  it('stores one row for 50 concurrent emits of one key and answers the rest as duplicates of it', async () => {
    const body = { type: 'order.placed', subject: 'order:1', payload: { total: 42 }, dedupe_key: 'order-1' };
    const responses = await Promise.all(
      Array.from({ length: 50 }, () => t.request('POST', '/v1/orgs/dedupe/signals', { key: operator, body })),
    );
    const created = responses.filter((response) => response.status === 201);
    const duplicates = responses.filter((response) => response.status === 200);
    expect(created).toHaveLength(1);
    expect(duplicates).toHaveLength(49);
    const id = created[0]!.body.signal.id;
    for (const duplicate of duplicates) {
      expect(duplicate.body.deduplicated).toBe(true);
      expect(duplicate.body.signal.id).toBe(id);
    }
    expect(await countByKey('order-1')).toBe(1);
  });

  it('answers 409 idempotency_conflict for the same key with another payload and writes nothing', async () => {
    const first = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'order.placed', payload: { total: 1 }, dedupe_key: 'order-2' },
    });
    expect(first.status).toBe(201);
    const second = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'order.placed', payload: { total: 2 }, dedupe_key: 'order-2' },
    });
    expect(second.status).toBe(409);
    expect(second.headers.get('content-type')).toContain('application/problem+json');
    expect(second.body.code).toBe('idempotency_conflict');
    expect(await countByKey('order-2')).toBe(1);
  });

  it('dedupes by the Idempotency-Key header and treats key order in the payload as equal', async () => {
    const headers = { 'idempotency-key': 'header-key-1' };
    const first = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      headers,
      body: { type: 'order.placed', payload: { a: 1, b: { c: 2, d: 3 } } },
    });
    const again = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      headers,
      body: { type: 'order.placed', payload: { b: { d: 3, c: 2 }, a: 1 } },
    });
    expect(first.status).toBe(201);
    expect(again.status).toBe(200);
    expect(again.body.signal.id).toBe(first.body.signal.id);
    expect(first.body.signal.dedupe_key).toBe('header-key-1');
  });

  it('derives a key from content and occurred_at when none is given', async () => {
    const body = { type: 'sensor.read', payload: { v: 7 }, occurred_at: '2026-11-21T10:00:00Z' };
    const first = await t.request('POST', '/v1/orgs/dedupe/signals', { key: operator, body });
    const again = await t.request('POST', '/v1/orgs/dedupe/signals', { key: operator, body });
    const later = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { ...body, occurred_at: '2026-11-21T10:00:01Z' },
    });
    expect([first.status, again.status, later.status]).toEqual([201, 200, 201]);
    expect(again.body.signal.id).toBe(first.body.signal.id);
    expect(later.body.signal.id).not.toBe(first.body.signal.id);
  });

  it('answers a batch with created, duplicate, conflict and invalid items in input order', async () => {
    await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'item.added', payload: { n: 1 }, dedupe_key: 'batch-existing' },
    });
    const response = await t.request('POST', '/v1/orgs/dedupe/signals/batch', {
      key: operator,
      body: {
        signals: [
          { type: 'item.added', payload: { n: 10 }, dedupe_key: 'batch-new-1' },
          { type: 'item.added', payload: { n: 1 }, dedupe_key: 'batch-existing' },
          { type: 'item.added', payload: { n: 999 }, dedupe_key: 'batch-existing' },
          { type: 'Not A Type', payload: {} },
          { type: 'org.created', payload: {} },
          { type: 'item.added', payload: { n: 11 }, dedupe_key: 'batch-new-2' },
          { type: 'item.added', payload: { n: 10 }, dedupe_key: 'batch-new-1' },
          { type: 'item.added', payload: { n: 12 }, dedupe_key: 'batch-new-1' },
        ],
      },
    });
    expect(response.status).toBe(200);
    expect(response.body.results.map((result: { status: string }) => result.status)).toEqual([
      'created',
      'deduplicated',
      'conflict',
      'invalid',
      'invalid',
      'created',
      'deduplicated',
      'conflict',
    ]);
    expect(response.body.results[4].error.code).toBe('reserved_type');
    expect(response.body.results[6].signal.id).toBe(response.body.results[0].signal.id);
    expect(await countByKey('batch-new-1')).toBe(1);
    expect(await countByKey('batch-new-2')).toBe(1);
    // Created signals of one batch are contiguous in stream order.
    const [first, second] = [response.body.results[0].signal.position, response.body.results[5].signal.position];
    expect(first < second).toBe(true);
    expect(first.slice(0, 16)).toBe(second.slice(0, 16));
  });

  it('refuses reserved types and bad type names with 422 and writes nothing', async () => {
    const [before] = await t.app.deps.sql`select count(*)::int as n from org_dedupe.signals`;
    const reserved = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'directive.approved', payload: {} },
    });
    expect(reserved.status).toBe(422);
    expect(reserved.body.code).toBe('reserved_type');
    const badName = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'Forum.Post', payload: {} },
    });
    expect(badName.status).toBe(422);
    expect(badName.body.code).toBe('validation_failed');
    expect(badName.body.errors[0].path).toBe('type');
    const [after] = await t.app.deps.sql`select count(*)::int as n from org_dedupe.signals`;
    expect(after!.n).toBe(before!.n);
  });

  it('refuses a payload over the limit with 413', async () => {
    const response = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'blob.stored', payload: { data: 'x'.repeat(300 * 1024) } },
    });
    expect(response.status).toBe(413);
    expect(response.body.code).toBe('payload_too_large');
  });

  it('records the key actor, correlation inherited along causation, and the traceparent', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const cause = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      headers: { traceparent },
      body: { type: 'thread.opened', payload: {}, correlation_id: 'flow-1' },
    });
    const effect = await t.request('POST', '/v1/orgs/dedupe/signals', {
      key: operator,
      body: { type: 'thread.replied', payload: {}, causation_id: cause.body.signal.id },
    });
    expect(cause.body.signal.actor).toEqual({ type: 'human', id: 'operator@dedupe.test' });
    expect(cause.body.signal.trace).toBe(traceparent);
    expect(effect.body.signal.correlation_id).toBe('flow-1');
    expect(effect.body.signal.causation_id).toBe(cause.body.signal.id);
  });
});
