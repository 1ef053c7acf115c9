/**
 * Replays over HTTP: request (202, the reason required, modes this build
 * lacks refused), list with ?status=, get with progress and report, 409 for
 * an overlapping one, refusals recorded as signals; and as-of: the state at
 * a position, read through the normal GET routes with ?as_of=, equal to what
 * those routes answered when the log stood there, until dropped.
 */
import { newId } from '../../src/core/ids.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { shadowSchemaOf } from '../../src/replay/shadow.ts';
import { HOLD_POLICY, heldDirective, setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { seedLifecycles } from '../support/lifecycles.ts';
import { schemaExists } from './support.ts';
import { createApiKey } from '../../src/auth/api-keys.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';

let t: TestApp;
let org: Tenant;
let admin: string;
let viewer: string;

beforeAll(async () => {
  t = await createTestApp({ env: { SIGNALBUS_REPLAY_PAGE_SIZE: '40' } });
  org = await t.createOrg('rpl_http');
  admin = await t.createKey(org, 'admin', 'ada@rpl.test');
  viewer = await t.createKey(org, 'viewer', 'vic@rpl.test');
  await t.startWorker({ concurrency: 2, pollIntervalMs: 50 });
});
afterAll(() => t?.close());

const path = (rest = '') => `/v1/orgs/${org.slug}/replays${rest}`;
async function ended(id: string) {
  return waitFor(async () => {
    const { body } = await t.request('GET', path(`/${id}`), { key: viewer });
    return body.replay.status === 'queued' || body.replay.status === 'running' ? undefined : body.replay;
  }, 60_000, `replay ${id} to end`);
}

/** What the GET routes answer now (or as of a replay). */
async function reads(asOf?: string) {
  const query = asOf ? `?as_of=${asOf}` : '';
  const get = async (route: string) => {
    const response = await t.request('GET', `/v1/orgs/${org.slug}/${route}${query}`, { key: viewer });
    expect(response.status, `${route}: ${response.text}`).toBe(200);
    return response.body;
  };
  return { directives: await get('directives'), executions: await get('executions'), policy: await get('policies') };
}

async function lastDenial() {
  const [denied] = await t.app.deps.sql<{ payload: Record<string, unknown>; actor: { id: string }; subject: string | null }[]>`
    select payload, actor, subject from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'replay.denied' order by tx_id desc, seq desc limit 1`;
  return denied;
}

/** A replay of this org that has ended other than succeeded. */
async function failedOrCancelled(): Promise<{ id: string }> {
  const { body } = await t.request('GET', path('?status=cancelled'), { key: viewer });
  return body.data[0];
}

async function lastPosition(): Promise<string> {
  const [row] = await t.app.deps.sql<{ position: string }[]>`
    select lpad(to_hex((tx_id::text)::bigint), 16, '0') || lpad(to_hex(seq), 16, '0') as position
      from ${t.app.deps.sql(`${org.schema}.signals`)} order by tx_id desc, seq desc limit 1`;
  return row!.position;
}

describe('replays over HTTP', () => {
  it('accepts a rebuild with 202, shows its progress and report, lists it by status', async () => {
    await seedLifecycles(t, org, 60);
    const accepted = await t.request('POST', path(), { key: admin, body: { mode: 'rebuild', reason: 'INC-42: repair directives' } });
    expect(accepted.status, accepted.text).toBe(202);
    expect(accepted.body.replay).toMatchObject({ status: 'queued', mode: 'rebuild', reason: 'INC-42: repair directives', actor: { id: 'ada@rpl.test' } });
    const replay = await ended(accepted.body.replay.id);
    expect(replay).toMatchObject({ status: 'succeeded', eta_s: 0, error: null });
    expect(replay.processed).toBeGreaterThanOrEqual(300);
    expect(replay.total).toBe(replay.processed);
    expect(Object.keys(replay.report.checksums_after)).toEqual(Object.keys(replay.report.checksums_before));
    expect(replay.report.drift.directives).toMatchObject({ added: 0, removed: 0, changed: 0 });

    const succeeded = await t.request('GET', path('?status=succeeded'), { key: viewer });
    expect(succeeded.body.data.map((row: { id: string }) => row.id)).toContain(replay.id);
    const failed = await t.request('GET', path('?status=failed'), { key: viewer });
    expect(failed.body.data).toEqual([]);
  });

  it('refuses a request without a reason (422), a mode this build lacks (422), an unknown projection (422)', async () => {
    for (const body of [{ mode: 'rebuild' }, { mode: 'rebuild', reason: '' }, { mode: 'rebuild', reason: 'x', projections: ['nope'] }, { mode: 'as_of', reason: 'ok reason', selection: { types: ['a'] } }]) {
      const response = await t.request('POST', path(), { key: admin, body });
      expect(response.status, JSON.stringify(body)).toBe(422);
      expect(response.body.code).toBe('validation_failed');
    }
  });

  it('a second rebuild of an overlapping scope is 409 replay_in_progress', async () => {
    const first = await t.request('POST', path(), { key: admin, body: { mode: 'rebuild', reason: 'INC-43', rate_per_s: 20 } });
    expect(first.status).toBe(202);
    const second = await t.request('POST', path(), { key: admin, body: { mode: 'rebuild', reason: 'INC-43 again', projections: ['policies'] } });
    expect(second.status).toBe(409);
    expect(second.body.code).toBe('replay_in_progress');
    // The refused attempt is in the log, naming the replay it ran into.
    expect(await lastDenial()).toMatchObject({
      actor: { id: 'ada@rpl.test' },
      payload: { action: 'request', code: 'replay_in_progress', mode: 'rebuild', missing: null, role: 'admin', reason: 'INC-43 again', replay_id: first.body.replay.id },
    });
    const cancelled = await t.request('POST', path(`/${first.body.replay.id}/cancel`), { key: admin, body: { reason: 'done testing' } });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.replay.status).toBe('cancelled');
  });

  it('records a refused cancel as a replay.denied signal: by a role that may not, and of a replay that has ended', async () => {
    const queued = await t.request('POST', path(), { key: admin, body: { mode: 'as_of', reason: 'INC-45', selection: { before: new Date(Date.now() - 60_000).toISOString() } } });
    expect(queued.status, queued.text).toBe(202);
    const id: string = queued.body.replay.id;

    const byViewer = await t.request('POST', path(`/${id}/cancel`), { key: viewer, body: { reason: 'INC-45: stop it' } });
    expect(byViewer.status).toBe(403);
    expect(await lastDenial()).toMatchObject({
      actor: { id: 'vic@rpl.test' },
      subject: `replay:${id}`,
      payload: { action: 'cancel', code: 'forbidden', mode: 'as_of', missing: 'org:replay', role: 'viewer', reason: 'INC-45: stop it', replay_id: id },
    });

    const ended = await t.request('POST', path(`/${(await failedOrCancelled()).id}/cancel`), { key: admin, body: { reason: 'INC-45: again' } });
    expect(ended.status).toBe(409);
    expect(ended.body.code).toBe('invalid_transition');
    const denial = await lastDenial();
    expect(denial).toMatchObject({ actor: { id: 'ada@rpl.test' }, payload: { action: 'cancel', code: 'invalid_transition', missing: null, role: 'admin', reason: 'INC-45: again' } });
    // Refusals change no replay.
    expect((await t.request('GET', path(`/${id}`), { key: viewer })).body.replay.status).not.toBe('cancelled');
  });

  it('records a refused request as a replay.denied signal with the role and the missing permission', async () => {
    const refused = await t.request('POST', path(), { key: viewer, body: { mode: 'rebuild', reason: 'INC-44: curious' } });
    expect(refused.status).toBe(403);
    const [denied] = await t.app.deps.sql<{ payload: Record<string, unknown>; actor: { id: string } }[]>`
      select payload, actor from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'replay.denied' order by tx_id desc, seq desc limit 1`;
    expect(denied).toMatchObject({ actor: { id: 'vic@rpl.test' }, payload: { action: 'request', code: 'forbidden', mode: 'rebuild', role: 'viewer', missing: 'org:replay', reason: 'INC-44: curious', replay_id: null } });
  });
});

describe('roles', () => {
  it('support replays in any org; executing new directives needs the org admin, and the refusal is in the log', async () => {
    const support = (await createApiKey(t.app.deps, {
      tenant: null,
      input: { name: 'support', role: 'support', actor: { type: 'human', id: 'sue@support.test' } },
      by: PLATFORM_ACTOR,
    })).secret;
    const elsewhere = await t.createOrg('rpl_http_other');
    const accepted = await t.request('POST', `/v1/orgs/${elsewhere.slug}/replays`, { key: support, body: { mode: 'rebuild', reason: 'INC-50: another org' } });
    expect(accepted.status, accepted.text).toBe(202);
    expect(accepted.body.replay.actor).toEqual({ type: 'human', id: 'sue@support.test' });

    const execute = await t.request('POST', `/v1/orgs/${elsewhere.slug}/replays`, {
      key: support,
      body: { mode: 'redeliver', reason: 'INC-51: run them for real', new_directives: 'execute' },
    });
    expect(execute.status).toBe(403);
    const [denied] = await t.app.deps.sql<{ payload: Record<string, unknown>; actor: { id: string } }[]>`
      select payload, actor from ${t.app.deps.sql(`${elsewhere.schema}.signals`)} where type = 'replay.denied'`;
    expect(denied).toMatchObject({ actor: { id: 'sue@support.test' }, payload: { mode: 'redeliver', role: 'support', missing: 'org:admin' } });
  });
});

describe('as of', () => {
  it('reads, through the normal GET routes, the state at position P as those routes answered it then; dropped on demand', async () => {
    await setPolicy(t, org, HOLD_POLICY);
    const held = await heldDirective(t, org);
    const position = await lastPosition();
    const then = await reads();
    // The org moves on: more directives, a decision, a policy change.
    for (let i = 0; i < 3; i++) await heldDirective(t, org, { params: { later: i } });
    const approved = await t.request('POST', `/v1/orgs/${org.slug}/directives/${held.id}/approve`, { key: admin, body: { reason: 'later' } });
    expect(approved.status).toBe(200);
    await setPolicy(t, org, { rules: [] });
    expect(await reads()).not.toEqual(then);

    const accepted = await t.request('POST', path(), { key: admin, body: { mode: 'as_of', reason: 'TICKET-7: what did they see', selection: { until: position } } });
    expect(accepted.status, accepted.text).toBe(202);
    const replay = await ended(accepted.body.replay.id);
    expect(replay.status, JSON.stringify(replay.error)).toBe('succeeded');
    expect(replay.report.as_of).toEqual({ position });
    expect(Date.parse(replay.expires_at) - Date.parse(replay.finished_at)).toBeCloseTo(3600_000, -4);

    expect(await reads(replay.id)).toEqual(then);
    // Read-only: nothing writes there, and a write that tried would be refused.
    await expect(t.app.deps.sql`delete from ${t.app.deps.sql(`${shadowSchemaOf(replay.id, 'as_of')}.directives`)}`).rejects.toThrow(/read-only/);
    const one = await t.request('GET', `/v1/orgs/${org.slug}/directives/${held.id}?as_of=${replay.id}`, { key: viewer });
    expect(one.body.directive.status).toBe('awaiting_approval');
    // Without as_of, live state as ever.
    expect((await reads()).policy.rules).toEqual([]);

    // Not an as-of replay, not a replay id, or an unknown one: refused.
    const rebuilds = await t.request('GET', path('?status=succeeded'), { key: viewer });
    const rebuildId = rebuilds.body.data.find((row: { mode: string }) => row.mode === 'rebuild').id;
    expect((await t.request('GET', `/v1/orgs/${org.slug}/directives?as_of=${rebuildId}`, { key: viewer })).status).toBe(422);
    expect((await t.request('GET', `/v1/orgs/${org.slug}/directives?as_of=rpl_nothing`, { key: viewer })).status).toBe(422);
    expect((await t.request('GET', `/v1/orgs/${org.slug}/directives?as_of=${newId('replay')}`, { key: viewer })).status).toBe(404);

    const dropped = await t.request('POST', path(`/${replay.id}/cancel`), { key: admin, body: {} });
    expect(dropped.status).toBe(200);
    expect(dropped.body.replay.dropped_at).not.toBeNull();
    expect(await schemaExists(t, shadowSchemaOf(replay.id, 'as_of'))).toBe(false);
    expect((await t.request('GET', `/v1/orgs/${org.slug}/directives?as_of=${replay.id}`, { key: viewer })).status).toBe(404);
  });

  it('takes a time instead of a position: the signals recorded by then', async () => {
    const policyThen = (await reads()).policy;
    // Rounded up to the millisecond the API's times carry, so the last signal is inside.
    const [row] = await t.app.deps.sql<{ at: Date }[]>`
      select date_trunc('milliseconds', max(recorded_at)) + interval '1 millisecond' as at from ${t.app.deps.sql(`${org.schema}.signals`)}`;
    await new Promise((resolve) => setTimeout(resolve, 20));
    await setPolicy(t, org, HOLD_POLICY);
    const accepted = await t.request('POST', path(), { key: admin, body: { mode: 'as_of', reason: 'TICKET-9', selection: { before: row!.at.toISOString() } } });
    expect(accepted.status, accepted.text).toBe(202);
    const replay = await ended(accepted.body.replay.id);
    expect(replay.status).toBe('succeeded');
    expect(replay.report.as_of).toEqual({ time: row!.at.toISOString() });
    const asOf = await t.request('GET', `/v1/orgs/${org.slug}/policies?as_of=${replay.id}`, { key: viewer });
    expect(asOf.body).toEqual(policyThen);
    expect((await reads()).policy).not.toEqual(policyThen);
  });

  it('is dropped by its job once its TTL has passed', async () => {
    const accepted = await t.request('POST', path(), { key: admin, body: { mode: 'as_of', reason: 'TICKET-8', ttl_s: 60 } });
    const replay = await ended(accepted.body.replay.id);
    expect(replay.status).toBe('succeeded');
    expect((await t.request('GET', `/v1/orgs/${org.slug}/policies?as_of=${replay.id}`, { key: viewer })).status).toBe(200);
    const { sql } = t.app.deps;
    const [job] = await sql<{ run_at: Date }[]>`
      select run_at from graphile_worker._private_jobs where key = ${`replay:${replay.id}:drop`}`;
    expect(job!.run_at.toISOString()).toBe(replay.expires_at);
    // Time passes.
    await sql`update graphile_worker._private_jobs set run_at = now() where key = ${`replay:${replay.id}:drop`}`;
    await waitFor(async () => !(await schemaExists(t, shadowSchemaOf(replay.id, 'as_of'))), 20_000, 'the as-of state to be dropped');
    await waitFor(async () => (await t.request('GET', path(`/${replay.id}`), { key: viewer })).body.replay.dropped_at, 20_000, 'replay.dropped');
    expect((await t.request('GET', `/v1/orgs/${org.slug}/policies?as_of=${replay.id}`, { key: viewer })).status).toBe(404);
  });
});
