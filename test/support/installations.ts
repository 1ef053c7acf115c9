/**
 * Installations for suites that need one in a given state, made through the
 * verbs and with the install job run in-process (no worker needed), and a
 * registry copy holding more versions of webhook-relay to upgrade to: 1.1.0
 * (1.0.1 again, same config schema), 2.0.0 (adds a required secret; its config needs a `timeout_ms`
 * the 1.x config lacks, and refuses `send_test_ping`), and 1.0.2, yanked.
 * Installs are of 1.0.1: the shipped 1.0.0 is yanked.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Tenant } from '../../src/core/tenant.ts';
import { builtinExecutors } from '../../src/executors/builtin.ts';
import { createExecutorRegistry } from '../../src/executors/registry.ts';
import { runInstallationJob } from '../../src/packages/installation-job.ts';
import { getInstallation } from '../../src/packages/installation-read.ts';
import { installPackage, setInstallationEnabled, uninstallInstallation } from '../../src/packages/installations.ts';
import { REGISTRY_DIR } from '../../src/packages/registry-files.ts';
import { publishVersion, yankVersion } from '../../src/packages/registry.ts';
import { emit } from '../../src/signals/emit.ts';
import type { VerbContext } from '../../src/signals/verb-context.ts';
import type { TestApp } from './harness.ts';

export const RELAY_CONFIG = { endpoint_url: 'https://relay.example.test/hook', forward_types: [], send_test_ping: false };
export const RELAY_SECRETS = { inbound_hmac_secret: 'relay-inbound-hmac-value', webhook_signing_secret: 'whsec_cmVsYXktc2lnbmluZy1zZWNyZXQ=' };

export type InstallationState = 'installing' | 'installed' | 'disabled' | 'install_failed';

const adminCtx = (org: Tenant): VerbContext => ({ tenant: org, actor: { type: 'human', id: 'admin@installations.test' }, source: 'api' });

/** Runs the installation's pending job as a worker would. */
export async function runPendingJob(t: TestApp, org: Tenant, id: string): Promise<void> {
  const row = await getInstallation(t.app.deps.bus.installations, { ctx: adminCtx(org), input: { id } });
  if (!row.pending) throw new Error(`installation ${id} has nothing pending`);
  await runInstallationJob(t.app.deps.bus.installations, {
    tenant: org,
    job: { org_id: org.id, installation_id: id, operation: row.pending.operation, version: row.pending.version, attempt: row.pending.attempt },
  });
}

/** A webhook-relay installation in `state`; `install_failed` lacks its required secrets. */
export async function installationIn(t: TestApp, org: Tenant, state: InstallationState): Promise<string> {
  const ctx = adminCtx(org);
  const { installation } = await installPackage(t.app.deps.bus.installations, {
    ctx,
    input: { package: 'webhook-relay', version: '1.0.1', config: RELAY_CONFIG, secrets: state === 'install_failed' ? {} : RELAY_SECRETS },
  });
  if (state !== 'installing') await runPendingJob(t, org, installation.id);
  if (state === 'disabled') await setInstallationEnabled(t.app.deps.bus.installations, { ctx, input: { id: installation.id, enabled: false } });
  const row = await getInstallation(t.app.deps.bus.installations, { ctx, input: { id: installation.id } });
  const expected = state === 'install_failed' ? 'failed' : state;
  if (row.status !== expected) throw new Error(`installation ${installation.id} is ${row.status}, not ${expected}: ${JSON.stringify(row.error)}`);
  return installation.id;
}

/** The secret webhook-relay 2.0.0 adds (required), which an upgrade to it must bring. */
const RELAY_V2_SECRET = { name: 'relay_api_token', description: 'The token 2.0.0 sends its deliveries with.' };
export const RELAY_V2_SECRETS = { relay_api_token: 'relay-token-v2-value' };

/** A copy of the shipped registry with webhook-relay 1.1.0, 2.0.0 and 1.0.2 (yanked) published; remove it with `cleanup`. */
export async function registryWithRelayVersions(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'signalbus-installs-'));
  await cp(REGISTRY_DIR, dir, { recursive: true });
  const manifest = JSON.parse(await readFile(path.join(dir, 'webhook-relay', '1.0.1', 'manifest.json'), 'utf8'));
  const context = { executors: createExecutorRegistry(builtinExecutors({ allowPrivateTargets: false })), now: () => new Date('2026-12-01T00:00:00Z') };
  const v2Config = {
    ...manifest.config,
    properties: { endpoint_url: manifest.config.properties.endpoint_url, forward_types: manifest.config.properties.forward_types, timeout_ms: { type: 'integer', minimum: 100 } },
    required: ['endpoint_url', 'forward_types', 'timeout_ms'],
  };
  for (const version of [{ ...manifest, version: '1.1.0' }, { ...manifest, version: '2.0.0', config: v2Config, secrets: [...manifest.secrets, RELAY_V2_SECRET], steps: [] }, { ...manifest, version: '1.0.2' }]) {
    const source = await mkdtemp(path.join(tmpdir(), 'signalbus-src-'));
    await writeFile(path.join(source, 'manifest.json'), JSON.stringify(version));
    await publishVersion(dir, source, context);
    await rm(source, { recursive: true, force: true });
  }
  await yankVersion(dir, { name: 'webhook-relay', version: '1.0.2', reason: 'posts twice' }, context);
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Secrets a stripe-revenue installation needs (its calls go to a fake). */
export const STRIPE_SECRETS = { stripe_api_key: 'rk_test_signalbus', stripe_webhook_secret: 'whsec_c3RyaXBlLXRlc3Qtc2VjcmV0' };

/** An installed `package@version` (1.0.0 unless given) with `config` and `secrets` (and `backfillFrom`, a position), through the install verb and its job. */
export async function installedPackage(
  t: TestApp,
  org: Tenant,
  spec: { package: string; version?: string; config?: Record<string, unknown>; secrets?: Record<string, string>; backfillFrom?: string },
): Promise<string> {
  const { installation } = await installPackage(t.app.deps.bus.installations, {
    ctx: adminCtx(org),
    input: {
      package: spec.package,
      version: spec.version ?? '1.0.0',
      config: spec.config ?? {},
      secrets: spec.secrets ?? {},
      ...(spec.backfillFrom ? { backfill_from: spec.backfillFrom } : {}),
    },
  });
  await runPendingJob(t, org, installation.id);
  const row = await getInstallation(t.app.deps.bus.installations, { ctx: adminCtx(org), input: { id: installation.id } });
  if (row.status !== 'installed') throw new Error(`installation ${installation.id} is ${row.status}: ${JSON.stringify(row.error)}`);
  return installation.id;
}

/** Disables, enables or uninstalls (running the uninstall job) an installation. */
export async function changeInstallation(t: TestApp, org: Tenant, id: string, change: 'disable' | 'enable' | 'uninstall'): Promise<void> {
  const deps = t.app.deps.bus.installations;
  if (change === 'uninstall') {
    await uninstallInstallation(deps, { ctx: adminCtx(org), input: { id } });
    await runPendingJob(t, org, id);
  } else await setInstallationEnabled(deps, { ctx: adminCtx(org), input: { id, enabled: change === 'enable' } });
}

export const STRIPE_REVENUE_INSTALL = {
  package: 'stripe-revenue',
  config: { refund_approval_above: 5000 },
  secrets: { stripe_webhook_secret: 'whsec_entities', stripe_api_key: 'sk_test_entities' },
};

/** Installs stripe-revenue in `org` and projects the customer the entity routes in V1_ROUTES read. */
export async function projectRouteTableEntity(t: TestApp, org: Tenant, key: string): Promise<string> {
  const id = await installedPackage(t, org, STRIPE_REVENUE_INSTALL);
  await emit(t.app.deps.bus.emit, {
    ctx: adminCtx(org),
    input: { type: 'stripe.customer.created', subject: key, payload: { id: key, email: 'route@table.test', name: 'Route Table' } },
  });
  return id;
}
