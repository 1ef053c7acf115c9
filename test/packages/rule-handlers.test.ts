/**
 * Rule handlers in the running service: an installed package's rules run
 * through the worker's dispatcher and the handler runtime, picked up when the
 * installation goes live and dropped when it is disabled — no restart. Their
 * outputs have deterministic keys (signal, installation, rule), so a
 * redelivered run proposes nothing new; a kind outside the package's scopes
 * and a CEL error each fail the run visibly; a new installation reads from
 * its install on, or backfills from a given position.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { getExecution } from '../../src/executions/read.ts';
import { liveSince } from '../../src/packages/installation-handlers.ts';
import { installationSubject } from '../../src/packages/installation-model.ts';
import { ruleHandlers } from '../../src/packages/rules.ts';
import { runHandleSignal } from '../../src/handlers/runtime.ts';
import { Manifest } from '../../src/packages/manifest.ts';
import { emit } from '../../src/signals/emit.ts';
import type { Signal } from '../../src/signals/model.ts';
import { createTestApp, waitFor, type TestApp } from '../support/harness.ts';
import { changeInstallation, installedPackage, STRIPE_SECRETS } from '../support/installations.ts';
import { writeSignalAt } from '../support/signal-at.ts';

const REGISTRY_MANIFEST = Manifest.parse({
  name: 'rules-probe',
  version: '1.0.0',
  description: 'rules that break the rules, built without the registry check',
  scopes: ['noop.record'],
  handlers: [
    // Outside its scopes: the check refuses this in a published manifest, the runtime refuses it anyway.
    { id: 'out-of-scope', on: ['probe.scope'], propose: { kind: 'webhook.post', params: { url: "'https://example.test/'", body: '{}' } } },
    { id: 'bad-cel', on: ['probe.cel'], propose: { kind: 'noop.record', params: { n: 'signal.payload.missing.deep + 1' } } },
    {
      id: 'record',
      on: ['probe.ok'],
      when: 'signal.payload.n > config.min',
      propose: { kind: 'noop.record', params: { n: 'signal.payload.n', installation: 'installation.id' }, key: "'n-' + string(signal.payload.n)" },
    },
  ],
});
const probeInstallation = { id: 'probe', package: 'rules-probe', version: '1.0.0', config: { min: 1 }, start: { txId: '0', seq: '0' } };

let t: TestApp;
let org: Tenant;
const actor = { type: 'human', id: 'refunds@acme.test' } as const;

beforeAll(async () => {
  t = await createTestApp({ handlers: ruleHandlers(probeInstallation, REGISTRY_MANIFEST) });
  org = await t.createOrg('rules');
  await t.startWorker();
});
afterAll(() => t?.close());

const emitIn = async (tenant: Tenant, type: string, payload: Record<string, unknown>) =>
  (await emit(t.app.deps.bus.emit, { ctx: { tenant, actor, source: 'api' }, input: { type, payload } })).signal;

async function runOnce(tenant: Tenant, handler: string, signal: Signal) {
  const executionId = newId('execution');
  await runHandleSignal(t.app.deps.bus.runtime, {
    tenant,
    job: { org_id: tenant.id, handler, signal_id: signal.id, execution_id: executionId, attempt: 1, traceparent: null },
  });
  return getExecution(t.app.deps.sql, tenant, executionId);
}

const directivesOf = (tenant: Tenant, installation: { id: string }) =>
  t.app.deps.sql<{ id: string; kind: string; params: Record<string, unknown>; idempotency_key: string; installation_id: string }[]>`
    select id, kind, params, idempotency_key, installation_id from ${t.app.deps.sql(`${tenant.schema}.directives`)}
     where installation_id = ${installation.id} order by id`;

const refund = (n: number) => ({ payment_intent: `pi_${n}`, amount: n });

describe('rule handlers of installed packages', () => {
  it('propose under keys from (signal, installation, rule); a redelivered run proposes nothing new', async () => {
    const installed = { id: await installedPackage(t, org, { package: 'stripe-revenue', config: { refund_approval_above: 1000 }, secrets: STRIPE_SECRETS }) };
    const signal = await emitIn(org, 'stripe.refund.requested', refund(500));
    const handler = `${installed.id}.propose-refund`;
    const [directive] = await waitFor(async () => {
      const rows = await directivesOf(org, installed);
      return rows.length > 0 && rows;
    }, 20_000, 'the rule to propose');
    expect(directive).toMatchObject({
      kind: 'stripe.refund.create',
      idempotency_key: `${signal.id}:${handler}:propose-refund`,
      installation_id: installed.id,
      params: { payment_intent: 'pi_500', amount: 500, reason: 'requested_by_customer', metadata: { signalbus_signal: signal.id } },
    });
    const again = await runOnce(org, handler, signal);
    expect(again.status).toBe('succeeded');
    expect(again.outputs.directives).toEqual([directive!.id]);
    expect(await directivesOf(org, installed)).toHaveLength(1);
  });

  it('binds config and installation into CEL, and keys by the rule’s own key', async () => {
    const signal = await emitIn(org, 'probe.ok', { n: 7 });
    const execution = await runOnce(org, `${probeInstallation.id}.record`, signal);
    expect(execution).toMatchObject({ status: 'succeeded' });
    const [directive] = await t.app.deps.sql<{ params: Record<string, unknown>; idempotency_key: string; installation_id: string }[]>`
      select params, idempotency_key, installation_id from ${t.app.deps.sql(`${org.schema}.directives`)} where id = ${execution.outputs.directives[0]!}`;
    expect(directive).toEqual({
      params: { n: 7, installation: probeInstallation.id },
      idempotency_key: `${signal.id}:${probeInstallation.id}.record:n-7`,
      installation_id: probeInstallation.id,
    });
    // config.min is 1: a signal at or below it is not the rule's.
    const below = await runOnce(org, `${probeInstallation.id}.record`, await emitIn(org, 'probe.ok', { n: 1 }));
    expect(below).toMatchObject({ status: 'succeeded', outputs: { directives: [] } });
  });

  it('fails the run when a rule proposes a kind outside its package’s scopes, writing nothing', async () => {
    const execution = await runOnce(org, `${probeInstallation.id}.out-of-scope`, await emitIn(org, 'probe.scope', {}));
    expect(execution.status).toBe('failed');
    expect(execution.error).toMatchObject({ code: 'scope_violation' });
    expect(execution.error!.message).toContain('webhook.post');
    expect(execution.outputs.directives).toEqual([]);
  });

  it('fails the run on a CEL error, naming the expression and its position', async () => {
    const execution = await runOnce(org, `${probeInstallation.id}.bad-cel`, await emitIn(org, 'probe.cel', {}));
    expect(execution.status).toBe('failed');
    expect(execution.error).toMatchObject({ code: 'cel_error' });
    expect(execution.error!.message).toMatch(/No such key: missing at line 1, column \d+/);
    expect(execution.error!.message).toContain('handlers.1.propose.params.n: signal.payload.missing.deep + 1');
  });

  it('stops on disable — its subscription is dropped — and starts again from the enable', async () => {
    const tenant = await t.createOrg('rules_disable');
    const installed = { id: await installedPackage(t, tenant, { package: 'stripe-revenue', config: { refund_approval_above: 1000 }, secrets: STRIPE_SECRETS }) };
    await emitIn(tenant, 'stripe.refund.requested', refund(1));
    await waitFor(async () => (await directivesOf(tenant, installed)).length === 1, 20_000, 'the first proposal');

    await changeInstallation(t, tenant, installed.id, 'disable');
    const subscriptions = () =>
      t.app.deps.sql<{ handler: string }[]>`select handler from ${t.app.deps.sql(`${tenant.schema}.subscriptions`)} where handler like ${`${installed.id}.%`}`;
    await waitFor(async () => (await subscriptions()).length === 0, 20_000, 'the disabled rule’s subscription to go');
    const whileDisabled = await emitIn(tenant, 'stripe.refund.requested', refund(2));
    await changeInstallation(t, tenant, installed.id, 'enable');
    await emitIn(tenant, 'stripe.refund.requested', refund(3));
    await waitFor(async () => (await directivesOf(tenant, installed)).length === 2, 20_000, 'the proposal after enabling');
    await t.settle();
    const params = (await directivesOf(tenant, installed)).map((row) => row.params.payment_intent);
    expect(params).toEqual(['pi_1', 'pi_3']);
    const [runs] = await t.app.deps.sql<{ n: number }[]>`
      select count(*)::int as n from ${t.app.deps.sql(`${tenant.schema}.executions`)} where signal_id = ${whileDisabled.id}`;
    expect(runs!.n).toBe(0);
  });

  it('reads from the install on by default, and backfills from a given position', async () => {
    const config = { refund_approval_above: 1000 };
    const live = await t.createOrg('rules_from_now');
    const backfilling = await t.createOrg('rules_backfill');
    await emitIn(live, 'stripe.refund.requested', refund(10));
    const earlier = await emitIn(backfilling, 'stripe.refund.requested', refund(10));
    const fromNow = { id: await installedPackage(t, live, { package: 'stripe-revenue', config, secrets: STRIPE_SECRETS }) };
    const backfilled = { id: await installedPackage(t, backfilling, { package: 'stripe-revenue', config, secrets: STRIPE_SECRETS, backfillFrom: '0'.repeat(32) }) };
    await emitIn(live, 'stripe.refund.requested', refund(11));
    await emitIn(backfilling, 'stripe.refund.requested', refund(11));
    await waitFor(
      async () => (await directivesOf(backfilling, backfilled)).length === 2 && (await directivesOf(live, fromNow)).length === 1,
      20_000,
      'both installations to propose',
    );
    await t.settle();
    expect((await directivesOf(live, fromNow)).map((row) => row.params.payment_intent)).toEqual(['pi_11']);
    expect((await directivesOf(backfilling, backfilled)).map((row) => row.params.payment_intent).sort()).toEqual(['pi_10', 'pi_11']);
    expect((await directivesOf(backfilling, backfilled)).some((row) => row.idempotency_key.startsWith(`${earlier.id}:`))).toBe(true);
  });
});

describe('where an installation went live', () => {
  it('is its last lifecycle signal by position as a number: transaction ids across a power of ten', async () => {
    const digits = await t.createOrg('rules_digits');
    const subject = installationSubject('ins_probe');
    // Installed in transaction 9, enabled again in 10: as text, '9' sorts after '10'.
    await writeSignalAt(t.app.deps.sql, digits, '9', { type: 'installation.installed', subject });
    const enabled = await writeSignalAt(t.app.deps.sql, digits, '10', { type: 'installation.enabled', subject });
    expect((await liveSince(t.app.deps.sql, digits, [subject])).get(subject)).toEqual({ type: 'installation.enabled', tx_id: '10', seq: enabled.seq });
  });
});
