/**
 * The installation lifecycle over HTTP, with the install job run in-process
 * as a worker would (one test runs a real worker): invalid config and yanked
 * versions write nothing; one installation per package; a failure injected
 * at each step leaves a visible failed installation and nothing of the
 * attempt, and a retry completes it; an upgrade whose config does not fit
 * reports what must change and changes nothing, one given a config for the
 * new version applies it with the version, or neither when its job fails; uninstall keeps the log;
 * the package's default policy decides its installation's directives while
 * it is installed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tenant } from '../../src/core/tenant.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { runInstallationJob } from '../../src/packages/installation-job.ts';
import { listActiveInstallations } from '../../src/packages/installation-read.ts';
import type { VerbContext } from '../../src/signals/verb-context.ts';
import { setPolicy } from '../support/fanout.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { registryWithRelayVersions, RELAY_CONFIG, RELAY_SECRETS, RELAY_V2_SECRETS, runPendingJob } from '../support/installations.ts';

let t: TestApp;
let registry: Awaited<ReturnType<typeof registryWithRelayVersions>>;
let org: Tenant;
let admin: string;
let viewer: string;
/** The step the next install job fails at, if any. */
let failAt: string | null = null;

beforeAll(async () => {
  registry = await registryWithRelayVersions();
  t = await createTestApp({
    env: { SIGNALBUS_REGISTRY_DIR: registry.dir },
    beforeInstallationStep: (step) => {
      if (step === failAt) throw new Error(`injected failure at ${step}`);
    },
  });
  org = await t.createOrg('installs');
  admin = await t.createKey(org, 'admin');
  viewer = await t.createKey(org, 'viewer');
});
afterAll(async () => {
  await t?.close();
  await registry?.cleanup();
});

const base = () => `/v1/orgs/${org.slug}/installations`;
const install = (body: unknown, key = admin) => t.request('POST', base(), { key, body });
const get = async (id: string) => (await t.request('GET', `${base()}/${id}`, { key: viewer })).body.installation;

async function counts() {
  const sql = t.app.deps.sql;
  const [row] = await sql<{ installations: number; signals: number; routes: number; secrets: number; directives: number; jobs: number }[]>`
    select (select count(*)::int from ${sql(`${org.schema}.installations`)}) as installations,
           (select count(*)::int from ${sql(`${org.schema}.signals`)}) as signals,
           (select count(*)::int from public.installation_routes where org_id = ${org.id}) as routes,
           (select count(*)::int from ${sql(`${org.schema}.secrets`)}) as secrets,
           (select count(*)::int from ${sql(`${org.schema}.directives`)}) as directives,
           (select count(*)::int from graphile_worker._private_jobs) as jobs`;
  return row!;
}

const directivesOf = (id: string) =>
  t.app.deps.sql<{ id: string; idempotency_key: string; status: string }[]>`
    select id, idempotency_key, status from ${t.app.deps.sql(`${org.schema}.directives`)} where installation_id = ${id}`;

describe('installing', () => {
  it('refuses a config that does not fit the schema with JSON pointers, and writes nothing', async () => {
    const before = await counts();
    const response = await install({ package: 'webhook-relay', version: '1.0.1', config: { endpoint_url: 42, forward_types: [], extra: true }, secrets: RELAY_SECRETS });
    expect(response.status).toBe(422);
    expect(response.body.code).toBe('validation_failed');
    const paths = response.body.errors.map((error: { path: string }) => error.path).sort();
    expect(paths).toEqual(['/config', '/config/endpoint_url', '/config/send_test_ping']);
    expect(response.text).not.toContain(RELAY_SECRETS.inbound_hmac_secret);
    expect(await counts()).toEqual(before);
  });

  it('refuses a yanked version, an unknown one and an undeclared secret, writing nothing', async () => {
    const before = await counts();
    for (const [version, reason] of [['1.0.2', 'posts twice'], ['1.0.0', "forwards each sender's events to every relay installation"]]) {
      const yanked = await install({ package: 'webhook-relay', version, config: RELAY_CONFIG, secrets: RELAY_SECRETS });
      expect(yanked.status, version).toBe(422);
      expect(yanked.headers.get('content-type')).toContain('application/problem+json');
      expect(yanked.body).toMatchObject({ code: 'validation_failed', errors: [{ path: 'version', message: expect.stringContaining(`yanked: ${reason}`) }] });
    }
    expect((await install({ package: 'webhook-relay', version: '9.9.9', config: RELAY_CONFIG })).status).toBe(404);
    const secret = await install({ package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: { stripe_api_key: 'sk_nope' } });
    expect(secret.status).toBe(422);
    expect(secret.body.errors[0].path).toBe('/secrets/stripe_api_key');
    expect(await counts()).toEqual(before);
  });

  it('answers 202 installing, keeps secrets in the vault under the installation, never echoes them, and installs', async () => {
    const response = await install({ package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS });
    expect(response.status).toBe(202);
    const { installation } = response.body;
    expect(installation).toMatchObject({ package: 'webhook-relay', version: '1.0.1', status: 'installing', config: RELAY_CONFIG, secrets: ['inbound_hmac_secret', 'webhook_signing_secret'] });
    expect(installation.webhook_url).toMatch(new RegExp(`/v1/hooks/${installation.id}$`));
    expect(response.text).not.toContain(RELAY_SECRETS.inbound_hmac_secret);
    const vault = await t.app.deps.sql`select name from ${t.app.deps.sql(`${org.schema}.secrets`)} where owner = ${installation.id} order by name`;
    expect(vault.map((row) => row.name)).toEqual(['inbound_hmac_secret', 'webhook_signing_secret']);
    const [route] = await t.app.deps.sql`select org_id from public.installation_routes where installation_id = ${installation.id}`;
    expect(route!.org_id).toBe(org.id);

    await runPendingJob(t, org, installation.id);
    // The same job again (a redelivery) changes nothing.
    const signals = (await counts()).signals;
    const job = { org_id: org.id, installation_id: installation.id, operation: 'install' as const, version: '1.0.1', attempt: 1 };
    await runInstallationJob(t.app.deps.bus.installations, { tenant: org, job });
    const installed = await get(installation.id);
    expect(installed).toMatchObject({ status: 'installed', pending: null, error: null });
    expect(installed.steps.map((step: { id: string }) => step.id)).toEqual(['config', 'secrets', 'policies', 'handlers', 'webhook', 'schemas', 'projections', 'step:ping', 'activate']);
    expect(installed.steps.find((step: { id: string }) => step.id === 'step:ping').status).toBe('skipped');
    expect((await counts()).signals).toBe(signals);
    const list = await t.request('GET', `${base()}?status=installed`, { key: viewer });
    expect(list.body.data.map((row: { id: string }) => row.id)).toContain(installation.id);
  });

  it('keeps one installation of a package that allows one, however often and however concurrently it is asked', async () => {
    const body = { package: 'stripe-revenue', version: '1.1.0', config: { refund_approval_above: 5000 }, secrets: { stripe_api_key: 'rk_test_one' } };
    const answers = await Promise.all(Array.from({ length: 6 }, () => install(body)));
    const ids = new Set(answers.map((answer) => answer.body.installation.id));
    expect(ids.size).toBe(1);
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 200, 200, 200, 200, 202]);
    const other = await install({ ...body, config: { refund_approval_above: 1 } });
    expect(other.status).toBe(409);
    expect(other.body.code).toBe('conflict');
    const [row] = await t.app.deps.sql`select count(*)::int as n from ${t.app.deps.sql(`${org.schema}.installations`)} where package = 'stripe-revenue'`;
    expect(row!.n).toBe(1);
  });
});

describe('a failure at each step', () => {
  const STEPS = ['config', 'secrets', 'policies', 'handlers', 'webhook', 'schemas', 'projections', 'step:ping', 'activate'];
  const pinging = { ...RELAY_CONFIG, send_test_ping: true };

  for (const step of STEPS) {
    it(`${step}: a visible failed installation, nothing of the attempt applied, and a retry completes it`, async () => {
      const { body } = await install({ package: 'webhook-relay', version: '1.0.1', config: pinging, secrets: RELAY_SECRETS });
      const id = body.installation.id;
      failAt = step;
      try {
        await runPendingJob(t, org, id);
      } finally {
        failAt = null;
      }
      const failed = await get(id);
      expect(failed.status).toBe('failed');
      expect(failed.error).toMatchObject({ operation: 'install', version: '1.0.1', attempt: 1, step, code: 'internal' });
      expect(failed.error.message).not.toContain('injected');
      const report = failed.steps.map((entry: { id: string; status: string }) => `${entry.id}:${entry.status}`);
      const at = STEPS.indexOf(step);
      // webhook-relay projects no entities: that step has nothing to do.
      expect(report).toEqual([...STEPS.slice(0, at).map((id) => `${id}:${id === 'projections' ? 'skipped' : 'succeeded'}`), `${step}:failed`]);
      // The ping step's directive is part of the attempt: rolled back with it.
      expect(await directivesOf(id)).toEqual([]);
      expect((await listActiveInstallations(t.app.deps.bus.installations, { ctx: { tenant: org, actor: { type: 'system', id: 't' }, source: 'system' }, input: undefined })).map((row) => row.id)).not.toContain(id);

      const retried = await t.request('POST', `${base()}/${id}/retry`, { key: admin });
      expect(retried.status).toBe(202);
      expect(retried.body.installation).toMatchObject({ status: 'installing', error: null, pending: { operation: 'install', attempt: 2 } });
      await runPendingJob(t, org, id);
      const installed = await get(id);
      expect(installed.status).toBe('installed');
      const pings = await directivesOf(id);
      expect(pings.map((directive) => directive.idempotency_key)).toEqual([`installation:${id}:1.0.1:ping:ping`]);
      // The package's default policy allowed its own ping to the configured endpoint.
      expect(pings[0]!.status).toBe('approved');
      expect((await t.request('POST', `${base()}/${id}/retry`, { key: admin })).status).toBe(409);
    });
  }
});

describe('upgrades', () => {
  it('reports exactly what must change when the config does not fit the new version, and changes nothing', async () => {
    const { body } = await install({ package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS });
    const id = body.installation.id;
    await runPendingJob(t, org, id);
    const before = await counts();
    const response = await t.request('POST', `${base()}/${id}/upgrade`, { key: admin, body: { version: '2.0.0' } });
    expect(response.status).toBe(422);
    expect(response.body.errors).toEqual(
      expect.arrayContaining([
        { path: '/config/timeout_ms', message: "must have required property 'timeout_ms'" },
        expect.objectContaining({ path: '/config', message: 'must NOT have additional properties' }),
      ]),
    );
    expect(await counts()).toEqual(before);
    expect(await get(id)).toMatchObject({ version: '1.0.1', status: 'installed', pending: null });

    // Changed as the report says, the upgrade goes through.
    const { send_test_ping: _dropped, ...rest } = RELAY_CONFIG;
    expect((await t.request('PATCH', `${base()}/${id}`, { key: admin, body: { config: { ...rest, timeout_ms: 500 } } })).status).toBe(422);
    const compatible = await t.request('POST', `${base()}/${id}/upgrade`, { key: admin, body: { version: '1.1.0' } });
    expect(compatible.status).toBe(202);
    expect(compatible.body.installation.pending).toMatchObject({ operation: 'upgrade', version: '1.1.0' });
    // A failing upgrade step leaves the installation installed at its old version, with the report.
    failAt = 'schemas';
    try {
      await runPendingJob(t, org, id);
    } finally {
      failAt = null;
    }
    expect(await get(id)).toMatchObject({
      version: '1.0.1', status: 'installed', pending: null,
      error: { operation: 'upgrade', version: '1.1.0', attempt: 1, step: 'schemas' },
    });
    expect((await t.request('POST', `${base()}/${id}/retry`, { key: admin })).body.installation.pending).toMatchObject({ operation: 'upgrade', version: '1.1.0', attempt: 2 });
    await runPendingJob(t, org, id);
    expect(await get(id)).toMatchObject({ version: '1.1.0', status: 'installed', pending: null });
    const [signal] = await t.app.deps.sql`
      select payload from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'installation.upgraded' and subject = ${`installation:${id}`}`;
    expect(signal!.payload).toMatchObject({ from_version: '1.0.1', version: '1.1.0' });
  });
});

describe('upgrades with a new config', () => {
  it('takes the config for the new version and applies it with the version when the upgrade succeeds, and never half', async () => {
    const { body } = await install({ package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS });
    const id = body.installation.id;
    await runPendingJob(t, org, id);
    const v2 = { endpoint_url: RELAY_CONFIG.endpoint_url, forward_types: ['order.paid'], timeout_ms: 500 };
    // No config satisfies both schemas: PATCH checks against the installed 1.0.1.
    expect((await t.request('PATCH', `${base()}/${id}`, { key: admin, body: { config: v2 } })).status).toBe(422);
    const upgrade = (extra: Record<string, unknown>) => t.request('POST', `${base()}/${id}/upgrade`, { key: admin, body: { version: '2.0.0', ...extra } });
    const before = await counts();
    const misfit = await upgrade({ config: { ...v2, timeout_ms: 5, send_test_ping: true }, secrets: RELAY_V2_SECRETS });
    expect(misfit.status).toBe(422);
    expect(misfit.body.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ path: '/config/timeout_ms', message: 'must be >= 100' }),
        expect.objectContaining({ path: '/config', message: 'must NOT have additional properties' }),
      ]),
    );
    const noSecret = await upgrade({ config: v2 });
    expect(noSecret.status).toBe(422);
    expect(noSecret.body.errors).toEqual([{ path: '/secrets/relay_api_token', message: 'required by 2.0.0; give it with the upgrade' }]);
    // The installed version's own secrets change with PATCH, so a failed upgrade leaves them as they were.
    const oldSecret = await upgrade({ config: v2, secrets: { ...RELAY_V2_SECRETS, inbound_hmac_secret: 'other' } });
    expect(oldSecret.status).toBe(422);
    expect(oldSecret.body.errors).toEqual([expect.objectContaining({ path: '/secrets/inbound_hmac_secret' })]);
    expect(await counts()).toEqual(before);

    const accepted = await upgrade({ config: v2, secrets: RELAY_V2_SECRETS });
    expect(accepted.status).toBe(202);
    expect(accepted.body.installation).toMatchObject({ version: '1.0.1', config: RELAY_CONFIG, pending: { operation: 'upgrade', version: '2.0.0', config: v2 } });
    expect(accepted.body.installation.secrets).toContain('relay_api_token');
    const [requested] = await t.app.deps.sql<{ payload: Record<string, unknown> }[]>`
      select payload from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'installation.upgrade_requested' and subject = ${`installation:${id}`}`;
    expect(requested!.payload).toMatchObject({ version: '2.0.0', config: v2, secrets: expect.arrayContaining(['relay_api_token']) });
    expect(JSON.stringify(requested!.payload)).not.toContain(RELAY_V2_SECRETS.relay_api_token);

    // The job fails: the old version and the old config stay, and the retry applies the new config again.
    failAt = 'projections';
    try {
      await runPendingJob(t, org, id);
    } finally {
      failAt = null;
    }
    expect(await get(id)).toMatchObject({
      version: '1.0.1', config: RELAY_CONFIG, status: 'installed', pending: null,
      error: { operation: 'upgrade', version: '2.0.0', attempt: 1, step: 'projections', config: v2 },
    });
    const retried = await t.request('POST', `${base()}/${id}/retry`, { key: admin });
    expect(retried.body.installation.pending).toEqual({ operation: 'upgrade', version: '2.0.0', attempt: 2, config: v2 });
    await runPendingJob(t, org, id);
    expect(await get(id)).toMatchObject({ version: '2.0.0', config: v2, status: 'installed', pending: null, error: null });
    const [upgraded] = await t.app.deps.sql<{ payload: Record<string, unknown> }[]>`
      select payload from ${t.app.deps.sql(`${org.schema}.signals`)} where type = 'installation.upgraded' and subject = ${`installation:${id}`}`;
    expect(upgraded!.payload).toMatchObject({ from_version: '1.0.1', version: '2.0.0', config: v2 });
    // Now the config is checked against 2.0.0.
    expect((await t.request('PATCH', `${base()}/${id}`, { key: admin, body: { config: RELAY_CONFIG } })).status).toBe(422);
    expect((await t.request('PATCH', `${base()}/${id}`, { key: admin, body: { config: { ...v2, timeout_ms: 800 } } })).status).toBe(200);
  });
});

describe('disable, enable, uninstall', () => {
  it('stops and restarts the package, and an uninstall keeps its signals and removes its secrets', async () => {
    const { body } = await install({ package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS });
    const id = body.installation.id;
    await runPendingJob(t, org, id);
    await setPolicy(t, org, { rules: [] });
    const ctx: VerbContext = { tenant: org, actor: { type: 'integration', id: 'webhook-relay' }, source: 'system', installationId: id };
    const propose = async (n: number) =>
      (await proposeDirective(t.app.deps.bus.directives, { ctx, input: { kind: 'webhook.post', params: { url: RELAY_CONFIG.endpoint_url, body: { n } }, idempotency_key: `policy-${id}-${n}` } })).directive;
    // Installed: the package's rule decides its installation's directive.
    expect((await propose(1)).decision).toMatchObject({ effect: 'allow', rule: 'webhook-relay.configured-endpoint' });

    expect((await t.request('POST', `${base()}/${id}/disable`, { key: admin })).body.installation.status).toBe('disabled');
    expect((await propose(2)).decision.effect).toBe('deny');
    expect((await t.request('POST', `${base()}/${id}/disable`, { key: admin })).status).toBe(409);
    expect((await t.request('POST', `${base()}/${id}/enable`, { key: admin })).body.installation.status).toBe('installed');

    // The org overrides the package's rule by writing one of the same id.
    await setPolicy(t, org, { rules: [{ id: 'webhook-relay.configured-endpoint', match: 'webhook.post', effect: 'require_approval' }] });
    expect((await propose(3)).decision).toMatchObject({ effect: 'require_approval', rule: 'webhook-relay.configured-endpoint' });

    await setPolicy(t, org, { rules: [] });
    const signalsBefore = await t.app.deps.sql`select id from ${t.app.deps.sql(`${org.schema}.signals`)} where subject = ${`installation:${id}`}`;
    const uninstall = await t.request('DELETE', `${base()}/${id}`, { key: admin });
    expect(uninstall.status).toBe(202);
    expect(uninstall.body.installation.pending).toMatchObject({ operation: 'uninstall' });
    // A failing uninstall step removes nothing: still installed, secrets kept, the report shown; a retry finishes it.
    failAt = 'secrets';
    try {
      await runPendingJob(t, org, id);
    } finally {
      failAt = null;
    }
    expect(await get(id)).toMatchObject({ status: 'installed', error: { operation: 'uninstall', step: 'secrets' } });
    const [kept] = await t.app.deps.sql`select count(*)::int as n from ${t.app.deps.sql(`${org.schema}.secrets`)} where owner = ${id}`;
    expect(kept!.n).toBe(2);
    expect((await t.request('POST', `${base()}/${id}/retry`, { key: admin })).status).toBe(202);
    await runPendingJob(t, org, id);
    const gone = await get(id);
    expect(gone).toMatchObject({ status: 'uninstalled', pending: null });
    expect(gone.steps.map((step: { id: string }) => step.id)).toEqual(['handlers', 'secrets']);
    expect(gone.error).toBeNull();
    const signalsAfter = await t.app.deps.sql`select id, type from ${t.app.deps.sql(`${org.schema}.signals`)} where subject = ${`installation:${id}`}`;
    expect(signalsAfter.map((row) => row.id)).toEqual(expect.arrayContaining(signalsBefore.map((row) => row.id)));
    expect(signalsAfter.map((row) => row.type)).toEqual(expect.arrayContaining(['installation.requested', 'installation.installed', 'installation.uninstalled']));
    const [vault] = await t.app.deps.sql`select count(*)::int as n from ${t.app.deps.sql(`${org.schema}.secrets`)} where owner = ${id}`;
    expect(vault!.n).toBe(0);
    // Uninstalled: its rules apply to nothing any more.
    expect((await propose(4)).decision.effect).toBe('deny');
    for (const action of ['enable', 'disable', 'retry', 'upgrade']) {
      const response = await t.request('POST', `${base()}/${id}/${action}`, { key: admin, ...(action === 'upgrade' ? { body: { version: '1.1.0' } } : {}) });
      expect(response.status, action).toBe(409);
    }
    expect((await t.request('DELETE', `${base()}/${id}`, { key: admin })).status).toBe(409);
  });
});

describe('with a worker', () => {
  it('installs through its job', async () => {
    await t.startWorker();
    const response = await install({ package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: RELAY_SECRETS });
    expect(response.status).toBe(202);
    const installed = await waitFor(async () => {
      const row = await get(response.body.installation.id);
      return row.status === 'installed' ? row : undefined;
    }, 20_000, 'the install job');
    expect(installed.steps.at(-1)).toMatchObject({ id: 'activate', status: 'succeeded' });
  });
});
