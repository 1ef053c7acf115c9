/**
 * The installations projection: `installation.*` signals fold into one row
 * per installation, read back by the read verbs (the live set is status
 * `installed` only), and a rebuild from the log gives the same rows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import type { Tenant } from '../../src/core/tenant.ts';
import { withTransaction } from '../../src/db/transaction.ts';
import type { InstallationStep } from '../../src/packages/installation-model.ts';
import { getInstallation, listActiveInstallations, listInstallations } from '../../src/packages/installation-read.ts';
import { checksumProjections, rebuildProjections } from '../../src/projections/rebuild.ts';
import { PLATFORM_ACTOR } from '../../src/signals/actor.ts';
import { emitSystem, type SystemSignal } from '../../src/signals/system.ts';
import type { VerbContext } from '../../src/signals/verb-context.ts';
import { createTestApp, type TestApp } from '../support/harness.ts';

let t: TestApp;
let org: Tenant;
let ctx: VerbContext;

beforeAll(async () => {
  t = await createTestApp();
  org = await t.createOrg('ins_projection');
  ctx = { tenant: org, actor: PLATFORM_ACTOR, source: 'system' };
});
afterAll(async () => t?.close());

const record = (signals: SystemSignal[]) => withTransaction(t.app.deps.sql, undefined, (tx) => emitSystem(t.app.deps.bus.emit, ctx, tx, signals));
const STEPS: InstallationStep[] = [{ id: 'config', status: 'succeeded' }];

describe('the installations projection', () => {
  it('folds a lifecycle, shows only installed ones as live, and rebuilds to the same rows', async () => {
    const a = newId('installation');
    const b = newId('installation');
    const ref = (id: string, version = '1.0.0') => ({ installation_id: id, package: 'webhook-relay', version });
    await record([
      { type: 'installation.requested', payload: { ...ref(a), config: { n: 1 }, secrets: ['signing'], backfill_from: null }, dedupe_key: `${a}:requested` },
      { type: 'installation.requested', payload: { ...ref(b), config: {}, secrets: [], backfill_from: null }, dedupe_key: `${b}:requested` },
    ]);
    expect(await getInstallation(t.app.deps, { ctx, input: { id: a } })).toMatchObject({
      status: 'installing', version: '1.0.0', config: { n: 1 }, secrets: ['signing'], pending: { operation: 'install', attempt: 1 },
    });
    const failure = { operation: 'install' as const, version: '1.0.0', attempt: 1, step: 'config', code: 'validation_failed', message: 'no' };
    await record([
      { type: 'installation.installed', payload: { ...ref(a), attempt: 1, steps: STEPS }, dedupe_key: `${a}:installed` },
      { type: 'installation.failed', payload: { ...ref(b), attempt: 1, steps: [{ id: 'config', status: 'failed' }], error: failure }, dedupe_key: `${b}:failed` },
    ]);
    expect((await listActiveInstallations(t.app.deps, { ctx, input: undefined })).map((row) => row.id)).toEqual([a]);
    expect(await getInstallation(t.app.deps, { ctx, input: { id: b } })).toMatchObject({ status: 'failed', error: failure, pending: null });

    await record([
      { type: 'installation.upgrade_requested', payload: { ...ref(a, '1.1.0'), attempt: 1 }, dedupe_key: `${a}:upgrade` },
      { type: 'installation.upgraded', payload: { ...ref(a, '1.1.0'), from_version: '1.0.0', attempt: 1, steps: STEPS }, dedupe_key: `${a}:upgraded` },
      { type: 'installation.disabled', payload: ref(a, '1.1.0'), dedupe_key: `${a}:disabled` },
    ]);
    expect(await getInstallation(t.app.deps, { ctx, input: { id: a } })).toMatchObject({ status: 'disabled', version: '1.1.0', pending: null });
    expect(await listActiveInstallations(t.app.deps, { ctx, input: undefined })).toEqual([]);

    await record([
      { type: 'installation.enabled', payload: ref(a, '1.1.0'), dedupe_key: `${a}:enabled` },
      { type: 'installation.uninstall_requested', payload: { ...ref(a, '1.1.0'), attempt: 1 }, dedupe_key: `${a}:uninstall` },
      { type: 'installation.uninstalled', payload: { ...ref(a, '1.1.0'), attempt: 1, steps: STEPS }, dedupe_key: `${a}:uninstalled` },
      // Final: nothing after an uninstall reopens it.
      { type: 'installation.enabled', payload: ref(a, '1.1.0'), dedupe_key: `${a}:enabled-late` },
    ]);
    expect(await getInstallation(t.app.deps, { ctx, input: { id: a } })).toMatchObject({ status: 'uninstalled' });
    // Ids drawn in one millisecond order by their random part.
    const [first, second] = [a, b].sort();
    const page = await listInstallations(t.app.deps, { ctx, input: { limit: 1 } });
    expect(page.data.map((row) => row.id)).toEqual([first]);
    expect((await listInstallations(t.app.deps, { ctx, input: { limit: 5, after: page.next_cursor! } })).data.map((row) => row.id)).toEqual([second]);
    expect((await listInstallations(t.app.deps, { ctx, input: { limit: 5, status: 'failed' } })).data.map((row) => row.id)).toEqual([b]);

    const projections = t.app.deps.projections.projections.filter((projection) => projection.name === 'installations');
    expect(projections).toHaveLength(1);
    const live = await checksumProjections(t.app.deps.sql, org, projections);
    expect(live.installations!.rows).toBe(2);
    await rebuildProjections(t.app.deps.sql, org, t.app.deps.projections, { names: ['installations'] });
    expect(await checksumProjections(t.app.deps.sql, org, projections)).toEqual(live);
  });

  it('answers not_found for an unknown id', async () => {
    await expect(getInstallation(t.app.deps, { ctx, input: { id: newId('installation') } })).rejects.toMatchObject({ code: 'not_found' });
  });
});
