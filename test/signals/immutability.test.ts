/**
 * The log is append-only in the database itself: UPDATE, DELETE, TRUNCATE,
 * upserts and MERGE on an org's signals table are refused by its triggers even
 * for the superuser the app connects as, and the refused row is unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
const orgs: Tenant[] = [];
const signalIds = new Map<string, string>();

/** The whole stored row, as text, so any change to any column shows. */
async function storedRows(tenant: Tenant) {
  const sql = t.app.deps.sql;
  return sql<{ row: string }[]>`select to_jsonb(s)::text as row from ${sql(`${tenant.schema}.signals`)} s order by tx_id, seq`;
}

async function expectRefused(statement: Promise<unknown>, operation: string) {
  const error = await statement.then(
    () => undefined,
    (caught: unknown) => caught as { code?: string; message?: string },
  );
  expect(error, `${operation} was allowed`).toBeDefined();
  // restrict_violation, raised by refuse_signal_mutation(): not a syntax or permission error.
  expect(error!.code, error!.message).toBe('23001');
  expect(error!.message).toContain('signals are immutable');
  expect(error!.message).toContain(operation);
}

beforeAll(async () => {
  t = await createTestApp();
  for (const slug of ['immutable_a', 'immutable_b']) {
    const tenant = await t.createOrg(slug);
    const key = await t.createKey(tenant, 'operator');
    const emitted = await t.request('POST', `/v1/orgs/${slug}/signals`, {
      key,
      body: { type: 'ledger.entry.posted', subject: 'account:1', payload: { amount: 100 }, dedupe_key: 'entry-1' },
    });
    expect(emitted.status).toBe(201);
    signalIds.set(slug, emitted.body.signal.id);
    orgs.push(tenant);
  }
  const [role] = await t.app.deps.sql<{ superuser: boolean }[]>`select rolsuper as superuser from pg_roles where rolname = current_user`;
  // The point is that not even a superuser gets past the triggers.
  expect(role!.superuser).toBe(true);
});
afterAll(() => t.close());

describe.each(['immutable_a', 'immutable_b'])('the signals table of %s', (slug) => {
  const tenant = () => orgs.find((candidate) => candidate.slug === slug)!;
  const table = () => t.app.deps.sql(`${tenant().schema}.signals`);

  it('refuses UPDATE of a row and of every row, and keeps them unchanged', async () => {
    const sql = t.app.deps.sql;
    const before = await storedRows(tenant());
    expect(before.length).toBeGreaterThanOrEqual(2);
    await expectRefused(sql`update ${table()} set payload = '{"amount": 1}'::jsonb where id = ${signalIds.get(slug)!}`, 'UPDATE');
    await expectRefused(sql`update ${table()} set type = type`, 'UPDATE');
    await expectRefused(sql`update ${table()} set recorded_at = now() - interval '1 day'`, 'UPDATE');
    expect(await storedRows(tenant())).toEqual(before);
  });

  it('refuses DELETE of a row and of every row, and keeps them unchanged', async () => {
    const sql = t.app.deps.sql;
    const before = await storedRows(tenant());
    await expectRefused(sql`delete from ${table()} where id = ${signalIds.get(slug)!}`, 'DELETE');
    await expectRefused(sql`delete from ${table()}`, 'DELETE');
    expect(await storedRows(tenant())).toEqual(before);
  });

  it('refuses TRUNCATE, also with CASCADE and inside a transaction', async () => {
    const sql = t.app.deps.sql;
    const before = await storedRows(tenant());
    await expectRefused(sql`truncate ${table()}`, 'TRUNCATE');
    await expectRefused(sql`truncate ${table()} cascade`, 'TRUNCATE');
    await expectRefused(
      sql.begin(async (tx) => {
        await tx`truncate ${tx(`${tenant().schema}.signals`)}`;
      }),
      'TRUNCATE',
    );
    expect(await storedRows(tenant())).toEqual(before);
  });

  it('refuses an upsert that would rewrite a stored row, and MERGE', async () => {
    const sql = t.app.deps.sql;
    const before = await storedRows(tenant());
    await expectRefused(
      sql`
        insert into ${table()} (id, type, payload, actor, source, dedupe_key, payload_hash, occurred_at)
        values ('sig_forged', 'ledger.entry.posted', '{"amount": 1}', '{"type":"system","id":"x"}', 'test', 'entry-1', 'x', now())
        on conflict (dedupe_key) do update set payload = excluded.payload`,
      'UPDATE',
    );
    await expectRefused(
      sql`
        merge into ${table()} s using (select ${signalIds.get(slug)!}::text as id) v on s.id = v.id
        when matched then update set payload = '{"amount": 1}'::jsonb`,
      'UPDATE',
    );
    await expectRefused(
      sql`
        merge into ${table()} s using (select ${signalIds.get(slug)!}::text as id) v on s.id = v.id
        when matched then delete`,
      'DELETE',
    );
    expect(await storedRows(tenant())).toEqual(before);
  });

  it('still accepts appends (the triggers refuse mutation, not writing)', async () => {
    const sql = t.app.deps.sql;
    const before = await storedRows(tenant());
    await sql`
      insert into ${table()} (id, type, payload, actor, source, dedupe_key, payload_hash, occurred_at)
      values (${`sig_append_${slug}`}, 'ledger.entry.posted', '{"amount": 2}', '{"type":"system","id":"x"}', 'test', ${`append-${slug}`}, 'x', now())`;
    const after = await storedRows(tenant());
    expect(after.length).toBe(before.length + 1);
    expect(after.slice(0, before.length)).toEqual(before);
  });
});
