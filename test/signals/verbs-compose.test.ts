/**
 * Verbs compose: given a caller's transaction in `ctx.tx`, each verb's writes
 * and signals join it, so several verbs commit together or not at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../../src/db/transaction.ts';
import type { DirectiveDeps } from '../../src/directives/deps.ts';
import { getPolicy, showPolicy, updatePolicy } from '../../src/directives/policy-store.ts';
import { proposeDirective } from '../../src/directives/propose.ts';
import { getDirective } from '../../src/directives/store.ts';
import { expireDirective } from '../../src/directives/transitions.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { listSecrets } from '../../src/secrets/vault.ts';
import { setSecret } from '../../src/secrets/verbs.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import type { VerbContext } from '../../src/signals/verb-context.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

const REVIEW = { rules: [{ id: 'review', match: 'noop.*', effect: 'require_approval', approval_ttl_seconds: 60 }] };
const ALLOW = { rules: [{ id: 'allow', match: 'noop.*', effect: 'allow' }] };

let t: TestApp;
let org: Tenant;
let ctx: VerbContext;
/** A clock past any approval window. */
let later: DirectiveDeps;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('compose');
  ctx = { tenant: org, actor: PLATFORM_ACTOR, source: 'system', requestId: 'req_compose' };
  later = { ...t.app.deps.bus.directives, now: () => new Date(Date.now() + 86_400_000) };
  await updatePolicy(t.app.deps.bus.emit, { ctx, input: REVIEW });
});
afterAll(() => t.close());

const signalCount = async (type: string) =>
  (await t.app.deps.sql<{ n: number }[]>`select count(*)::int as n from ${t.app.deps.sql(`${org.schema}.signals`)} where type = ${type}`)[0]!.n;

async function awaitingDirective(n: number): Promise<string> {
  const { directive } = await proposeDirective(t.app.deps.bus.directives, { ctx, input: { kind: 'noop.record', params: { n } } });
  expect(directive.status).toBe('awaiting_approval');
  return directive.id;
}

describe('verbs in one caller transaction', () => {
  it('a rollback undoes a policy update and a directive expiry made in it', async () => {
    const id = await awaitingDirective(1);
    const before = await getPolicy(t.app.deps.sql, org);
    const updates = await signalCount('policy.updated');

    const failure = await withTransaction(t.app.deps.sql, undefined, async (tx) => {
      const joined = { ...ctx, tx };
      const policy = await updatePolicy(t.app.deps.bus.emit, { ctx: joined, input: ALLOW });
      expect(policy.version).toBe(before.version + 1);
      expect(await expireDirective(later, { ctx: joined, input: { id } })).toBe(true);
      // Inside, both writes are visible to a read in the same transaction.
      expect((await showPolicy(t.app.deps.bus.directives, { ctx: joined, input: {} })).version).toBe(before.version + 1);
      expect((await getDirective(tx.sql, org, id)).status).toBe('expired');
      throw new Error('the caller gives up');
    }).catch((error: unknown) => error);

    expect((failure as Error).message).toBe('the caller gives up');
    expect(await getPolicy(t.app.deps.sql, org)).toEqual(before);
    expect((await getDirective(t.app.deps.sql, org, id)).status).toBe('awaiting_approval');
    expect(await signalCount('policy.updated')).toBe(updates);
    expect(await signalCount('directive.expired')).toBe(0);
  });

  it('a commit keeps both, and a secret set in the same transaction with them', async () => {
    const id = await awaitingDirective(2);
    const before = await getPolicy(t.app.deps.sql, org);

    await withTransaction(t.app.deps.sql, undefined, async (tx) => {
      const joined = { ...ctx, tx };
      await updatePolicy(t.app.deps.bus.emit, { ctx: joined, input: REVIEW });
      await expireDirective(later, { ctx: joined, input: { id } });
      await setSecret({ vault: t.app.deps.vault, emit: t.app.deps.bus.emit }, { ctx: joined, input: { name: 'composed', secret: { value: 'composed-value' } } });
    });

    expect((await getPolicy(t.app.deps.sql, org)).version).toBe(before.version + 1);
    expect((await getDirective(t.app.deps.sql, org, id)).status).toBe('expired');
    expect((await listSecrets(t.app.deps.sql, org)).map((secret) => secret.name)).toContain('composed');
  });

  it('a secret set in a rolled-back transaction is not stored, nor audited', async () => {
    const audits = await signalCount('secret.updated');
    await withTransaction(t.app.deps.sql, undefined, async (tx) => {
      await setSecret({ vault: t.app.deps.vault, emit: t.app.deps.bus.emit }, { ctx: { ...ctx, tx }, input: { name: 'undone', secret: { value: 'undone-value' } } });
      await updatePolicy(t.app.deps.bus.emit, { ctx: { ...ctx, tx }, input: ALLOW });
      throw new Error('abort');
    }).catch(() => {});
    expect((await listSecrets(t.app.deps.sql, org)).map((secret) => secret.name)).not.toContain('undone');
    expect(await signalCount('secret.updated')).toBe(audits);
  });
});
