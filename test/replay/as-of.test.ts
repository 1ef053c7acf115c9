/**
 * As-of on installations and entities: the state at position P, read through
 * the normal GET routes with ?as_of=, equals what those routes answered when
 * the log stood at P — installations list and one, entities list (and by
 * type) and one, with each entity's position — though installations were
 * added and disabled and entities changed, removed and created since. The
 * positions entities read from the log are materialized with them, and are
 * read-only like the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { runReplay } from '../../src/replay/run.ts';
import { shadowSchemaOf } from '../../src/replay/shadow.ts';
import { emit } from '../../src/signals/emit.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';
import { changeInstallation, installationIn, installedPackage, STRIPE_REVENUE_INSTALL } from '../support/installations.ts';

let t: TestApp;
let org: Tenant;
let admin: string;
let viewer: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_REPLAY_PAGE_SIZE: '7' } });
  org = await t.createOrg('rpl_asof_entities');
  admin = await t.createKey(org, 'admin', 'ada@asof.test');
  viewer = await t.createKey(org, 'viewer', 'vic@asof.test');
});
afterAll(() => t?.close());

const signal = (type: string, payload: Record<string, unknown>) =>
  emit(t.app.deps.bus.emit, { ctx: { tenant: org, actor: { type: 'human', id: 'ops@asof.test' }, source: 'api' }, input: { type, payload } });

const get = (route: string) => t.request('GET', `/v1/orgs/${org.slug}${route}`, { key: viewer });

/** What the installation and entity GET routes answer now (or as of a replay). */
async function reads(installationId: string, asOf?: string) {
  const join = (route: string) => (asOf ? `${route}${route.includes('?') ? '&' : '?'}as_of=${asOf}` : route);
  const answers: Record<string, unknown> = {};
  for (const route of ['/installations', `/installations/${installationId}`, '/entities', '/entities?type=stripe.customer', '/entities/stripe.customer/cus_a', '/entities/stripe.customer/cus_b']) {
    const response = await get(join(route));
    expect(response.status, `${route}: ${response.text}`).toBe(200);
    answers[route] = response.body;
  }
  return answers;
}

async function lastPosition(): Promise<string> {
  const [row] = await t.app.deps.sql<{ position: string }[]>`
    select lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0') as position
      from ${t.app.deps.sql(`${org.schema}.signals`)} order by tx_id desc, seq desc limit 1`;
  return row!.position;
}

describe('as of, on installations and entities', () => {
  it('reads the installations and entities at position P as the routes answered them then', async () => {
    const stripe = await installedPackage(t, org, STRIPE_REVENUE_INSTALL);
    await signal('stripe.customer.created', { id: 'cus_a', email: 'a@x.test', name: 'Ada' });
    await signal('stripe.customer.created', { id: 'cus_b', email: 'b@x.test', name: 'Bo' });
    await signal('stripe.charge.succeeded', { id: 'ch_1', amount: 1200, currency: 'eur', customer: 'cus_a' });
    const position = await lastPosition();
    const then = await reads(stripe);
    expect((then['/entities'] as { data: unknown[] }).data).toHaveLength(3);

    // The org moves on: entities change, go and appear; an installation is added, another disabled.
    await signal('stripe.customer.updated', { id: 'cus_a', email: 'ada@x.test' });
    await signal('stripe.customer.deleted', { id: 'cus_b' });
    await signal('stripe.customer.created', { id: 'cus_c', email: 'c@x.test' });
    const relay = await installationIn(t, org, 'installed');
    await changeInstallation(t, org, stripe, 'disable');
    const now = await reads(stripe);
    for (const route of Object.keys(then)) expect(now[route], `${route} moved on`).not.toEqual(then[route]);

    const accepted = await t.request('POST', `/v1/orgs/${org.slug}/replays`, { key: admin, body: { mode: 'as_of', reason: 'TICKET-11: what did they have', selection: { until: position } } });
    expect(accepted.status, accepted.text).toBe(202);
    const id: string = accepted.body.replay.id;
    await runReplay(t.app.deps.bus.replays, { tenant: org, replayId: id });
    const replay = (await get(`/replays/${id}`)).body.replay;
    expect(replay.status, JSON.stringify(replay.error)).toBe('succeeded');
    expect(replay.report.projections).toEqual(expect.arrayContaining(['installations', 'entities']));

    expect(await reads(stripe, id)).toEqual(then);
    // What came after P is not there.
    expect((await get(`/installations/${relay}?as_of=${id}`)).status).toBe(404);
    expect((await get(`/entities/stripe.customer/cus_c?as_of=${id}`)).status).toBe(404);
    // Live state as ever.
    expect(await reads(stripe)).toEqual(now);

    // The positions materialized for entity reads are as read-only as the projections.
    const { sql } = t.app.deps;
    await expect(sql`delete from ${sql(`${shadowSchemaOf(id, 'as_of')}.signals`)}`).rejects.toThrow(/read-only/);
    await expect(sql`update ${sql(`${shadowSchemaOf(id, 'as_of')}.installations`)} set status = 'failed'`).rejects.toThrow(/read-only/);

    // Malformed: 422 at query.as_of; unknown: 404 — on every new as-of route.
    for (const route of ['/installations', `/installations/${stripe}`, '/entities', '/entities?type=stripe.customer', '/entities/stripe.customer/cus_a']) {
      const join = route.includes('?') ? '&' : '?';
      const malformed = await get(`${route}${join}as_of=rpl_nothing`);
      expect(malformed.status, route).toBe(422);
      expect(malformed.body.errors.map((error: { path: string }) => error.path), route).toEqual(['query.as_of']);
      expect((await get(`${route}${join}as_of=${newId('replay')}`)).status, route).toBe(404);
    }

    // Dropped on demand: the positions go with the rest.
    expect((await t.request('POST', `/v1/orgs/${org.slug}/replays/${id}/cancel`, { key: admin, body: {} })).status).toBe(200);
    expect((await get(`/entities?as_of=${id}`)).status).toBe(404);
  });
});
