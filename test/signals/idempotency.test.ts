/**
 * A repeated dedupe key answers the original only for the same request:
 * any client-supplied field that differs is a 409, for single emits and for
 * batch items, and signals stored before requests were hashed still dedupe.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/tenancy/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let org: Tenant;
let operator: string;
let cause: string;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('idem');
  operator = await t.createKey(org, 'operator');
  const caused = await t.request('POST', '/v1/orgs/idem/signals', { key: operator, body: { type: 'thread.opened', payload: {} } });
  cause = caused.body.signal.id;
});
afterAll(() => t.close());

const emit = (body: object, headers: Record<string, string> = {}) =>
  t.request('POST', '/v1/orgs/idem/signals', { key: operator, body, headers });

const countByKey = async (key: string) => {
  const [row] = await t.app.deps.sql`select count(*)::int as n from org_idem.signals where dedupe_key = ${key}`;
  return row!.n as number;
};

const base = {
  type: 'forum.post.created',
  subject: 'thread:42',
  payload: { post_id: 'p1', body: 'hello' },
  occurred_at: '2026-11-21T10:00:00Z',
  correlation_id: 'conv-1',
  schema_version: 2,
};

describe('a repeated key with another request', () => {
  const changes: Array<[string, object]> = [
    ['type', { type: 'forum.post.edited' }],
    ['subject', { subject: 'thread:43' }],
    ['subject (dropped)', { subject: undefined }],
    ['payload', { payload: { post_id: 'p1', body: 'hello!' } }],
    ['occurred_at', { occurred_at: '2026-11-21T10:00:01Z' }],
    ['occurred_at (dropped)', { occurred_at: undefined }],
    ['correlation_id', { correlation_id: 'conv-2' }],
    ['causation_id', { causation_id: 'sig_other' }],
    ['schema_version', { schema_version: 3 }],
  ];

  it.each(changes)('is a 409 idempotency_conflict when %s differs, and writes nothing', async (field, change) => {
    const key = `change-${field}`;
    const first = await emit({ ...base, dedupe_key: key });
    expect(first.status).toBe(201);
    const again = await emit({ ...base, ...change, dedupe_key: key });
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toContain('application/problem+json');
    expect(again.body.code).toBe('idempotency_conflict');
    expect(await countByKey(key)).toBe(1);
  });

  it('is a 409 through the Idempotency-Key header too', async () => {
    const headers = { 'idempotency-key': 'header-subject' };
    expect((await emit(base, headers)).status).toBe(201);
    const again = await emit({ ...base, subject: 'thread:99' }, headers);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('idempotency_conflict');
  });
});

describe('the same request again', () => {
  it('answers the original, whether the key came in the header or the body, and however the time and payload were spelled', async () => {
    const first = await emit({ ...base, causation_id: cause }, { 'idempotency-key': 'same-1' });
    expect(first.status).toBe(201);
    const repeats = [
      await emit({ ...base, causation_id: cause }, { 'idempotency-key': 'same-1' }),
      await emit({ ...base, causation_id: cause, dedupe_key: 'same-1' }),
      await emit(
        { ...base, causation_id: cause, occurred_at: '2026-11-21T11:00:00.000+01:00', payload: { body: 'hello', post_id: 'p1' } },
        { 'idempotency-key': 'same-1' },
      ),
    ];
    for (const repeat of repeats) {
      expect(repeat.status).toBe(200);
      expect(repeat.body).toEqual({ signal: first.body.signal, deduplicated: true });
    }
  });

  it('answers the original when a time left to the clock is left out again, later', async () => {
    const body = { type: 'forum.post.created', payload: { n: 1 }, dedupe_key: 'clock-1' };
    const first = await emit(body);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const again = await emit(body);
    expect([first.status, again.status]).toEqual([201, 200]);
    expect(again.body.signal.id).toBe(first.body.signal.id);
    // A schema version of 1 is what an omitted one means.
    expect((await emit({ ...body, schema_version: 1 })).status).toBe(200);
  });
});

describe('header and body keys', () => {
  it('are a 422 when both are sent and differ, and nothing is written', async () => {
    const answer = await emit({ ...base, dedupe_key: 'body-key' }, { 'idempotency-key': 'header-key' });
    expect(answer.status).toBe(422);
    expect(answer.body.code).toBe('validation_failed');
    expect(answer.body.errors).toEqual([{ path: 'dedupe_key', message: expect.any(String) }]);
    expect(await countByKey('body-key')).toBe(0);
    expect(await countByKey('header-key')).toBe(0);
  });
});

describe('batch items', () => {
  it('are a conflict when a key repeats with another field, stored or earlier in the batch, and a duplicate when all match', async () => {
    await emit({ ...base, dedupe_key: 'batch-stored' });
    const response = await t.request('POST', '/v1/orgs/idem/signals/batch', {
      key: operator,
      body: {
        signals: [
          { ...base, dedupe_key: 'batch-stored' },
          { ...base, dedupe_key: 'batch-stored', subject: 'thread:7' },
          { ...base, dedupe_key: 'batch-stored', correlation_id: 'conv-9' },
          { ...base, dedupe_key: 'batch-new' },
          { ...base, dedupe_key: 'batch-new', occurred_at: '2026-11-21T10:00:05Z' },
          { ...base, dedupe_key: 'batch-new' },
        ],
      },
    });
    expect(response.status).toBe(200);
    expect(response.body.results.map((result: { status: string }) => result.status)).toEqual([
      'deduplicated',
      'conflict',
      'conflict',
      'created',
      'conflict',
      'deduplicated',
    ]);
    expect(response.body.results[1].error.code).toBe('idempotency_conflict');
    expect(await countByKey('batch-new')).toBe(1);
  });
});

describe('signals stored before requests were hashed', () => {
  // As the append wrote them before the column existed: no request hash.
  const storeLegacy = async (key: string, fields: { occurred_at: string; correlation_id: string; subject: string | null }) => {
    const created = await emit({ ...base, dedupe_key: `${key}-template` });
    const { payload_hash } = created.body.signal;
    const id = `sig_legacy_${key}`;
    await t.app.deps.sql`
      insert into org_idem.signals (id, type, schema_version, subject, payload, actor, source, dedupe_key, payload_hash,
                                    correlation_id, occurred_at)
      values (${id}, ${base.type}, ${base.schema_version}, ${fields.subject}, ${t.app.deps.sql.json(base.payload)},
              ${t.app.deps.sql.json({ type: 'human', id: 'operator@idem.test' })}, 'api', ${key}, ${payload_hash},
              ${fields.correlation_id}, ${fields.occurred_at})`;
    return id;
  };

  it('answer the original for the same request, hashed from their columns', async () => {
    const id = await storeLegacy('legacy-same', { occurred_at: base.occurred_at, correlation_id: base.correlation_id, subject: base.subject });
    const again = await emit({ ...base, dedupe_key: 'legacy-same' });
    expect(again.status).toBe(200);
    expect(again.body.signal.id).toBe(id);
  });

  it('answer the original when the repeat leaves out a time or correlation the row may have been given by the bus', async () => {
    const id = await storeLegacy('legacy-omitted', { occurred_at: '2025-01-01T00:00:00Z', correlation_id: 'sig_itself', subject: base.subject });
    const { occurred_at: _time, correlation_id: _correlation, ...rest } = base;
    const again = await emit({ ...rest, dedupe_key: 'legacy-omitted' });
    expect(again.status).toBe(200);
    expect(again.body.signal.id).toBe(id);
  });

  it('are a conflict for a repeat that differs in a field they stored', async () => {
    await storeLegacy('legacy-other', { occurred_at: base.occurred_at, correlation_id: base.correlation_id, subject: base.subject });
    for (const change of [{ subject: 'thread:1' }, { occurred_at: '2026-11-21T10:00:09Z' }, { correlation_id: 'conv-3' }, { schema_version: 1 }]) {
      const again = await emit({ ...base, ...change, dedupe_key: 'legacy-other' });
      expect(again.status, JSON.stringify(change)).toBe(409);
    }
    expect(await countByKey('legacy-other')).toBe(1);
  });
});
