/**
 * The installation verbs. Each checks what it can before writing anything
 * (the version is installable, the config fits its schema, the secrets are
 * declared: else 422 and nothing written), then records its request as a
 * signal and, for install, upgrade, uninstall and retry, enqueues the job that
 * runs the steps — in one transaction. Disable, enable and config changes
 * take effect at once.
 */
import { z } from 'zod';
import { canonicalJson } from '../core/canonical-json.ts';
import { DomainError, notFound, type FieldError } from '../core/errors.ts';
import { isId, newId } from '../core/ids.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import { putSecret } from '../secrets/vault.ts';
import { emitSystem } from '../signals/system.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';
import { enqueueInstallationJob } from './installation-job.ts';
import { installationSubject, type InstallationRow } from './installation-model.ts';
import { findInstallation, type Installation } from './installation-read.ts';
import { configErrors, type InstallationDeps } from './installation-steps.ts';
import { PackageName, PackageVersion, type Manifest } from './manifest.ts';

const Secrets = z.record(z.string(), z.string().min(1).max(64 * 1024)).default({});
const Position = z.string().regex(/^[0-9a-f]{32}$/, 'a log position (32 hexadecimal digits, as signals show it)');

export const InstallInput = z.strictObject({
  package: PackageName,
  version: PackageVersion,
  config: z.record(z.string(), z.unknown()).default({}),
  secrets: Secrets,
  backfill_from: Position.nullish(),
});
export const ConfigureInput = z.strictObject({ config: z.record(z.string(), z.unknown()).optional(), secrets: Secrets.optional() });
export const UpgradeInput = z.strictObject({ version: PackageVersion, config: z.record(z.string(), z.unknown()).optional(), secrets: Secrets.optional() });

function parse<T>(schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new DomainError('validation_failed', 'the request is not valid', parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })));
}

const pointerErrors = (prefix: string, errors: FieldError[]) => errors.map((error) => ({ ...error, path: `${prefix}${error.path}` }));

function checkConfig(manifest: Manifest, config: unknown, what: string): void {
  const errors = configErrors(manifest, config);
  if (errors.length > 0) throw new DomainError('validation_failed', `${what} does not fit the config schema of ${manifest.name}@${manifest.version}`, pointerErrors('/config', errors));
}

function checkSecretNames(manifest: Manifest, secrets: Record<string, string>): void {
  const declared = new Set(manifest.secrets.map((secret) => secret.name));
  const unknown = Object.keys(secrets).filter((name) => !declared.has(name));
  if (unknown.length > 0) {
    throw new DomainError('validation_failed', `${manifest.name} declares no such secret`, unknown.map((name) => ({ path: `/secrets/${name}`, message: `not a secret of ${manifest.name}: ${[...declared].join(', ') || 'it declares none'}` })));
  }
}

async function storeSecrets(deps: InstallationDeps, tx: Tx, ctx: VerbContext, owner: string, secrets: Record<string, string>): Promise<void> {
  for (const [name, value] of Object.entries(secrets)) {
    await putSecret(deps.vault, { tenant: ctx.tenant, name, input: { value }, owner, db: tx.sql });
  }
}

/** Installs of one package in one org take turns, so "one per package" holds. */
const lockPackage = (tx: Tx, ctx: VerbContext, name: string) =>
  tx.sql`select pg_advisory_xact_lock(hashtextextended(${`signalbus:installation:${ctx.tenant.schema}:${name}`}, 0))`;

export interface InstallResult {
  installation: Installation;
  /** False when the same install was already there: nothing was written. */
  created: boolean;
}

/**
 * Requests an install: 202 with status `installing`. The same package,
 * version and config again answers the existing installation; another
 * version or config of a package that allows one installation is 409.
 */
export async function installPackage(deps: InstallationDeps, { ctx, input }: VerbCall<unknown>): Promise<InstallResult> {
  const request = parse(InstallInput, input);
  const manifest = deps.registry.installable(request.package, request.version);
  checkConfig(manifest, request.config, 'the config');
  checkSecretNames(manifest, request.secrets);
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    await lockPackage(tx, ctx, manifest.name);
    if (!manifest.multiple_installations) {
      const [existing] = await tx.sql<{ id: string }[]>`
        select id from ${tx.sql(`${ctx.tenant.schema}.installations`)}
         where package = ${manifest.name} and status <> 'uninstalled' order by id limit 1`;
      if (existing) {
        const row = (await findInstallation(tx.sql, ctx.tenant.schema, existing.id))!;
        if (row.version === manifest.version && canonicalJson(row.config) === canonicalJson(request.config)) return { installation: row, created: false };
        throw new DomainError('conflict', `${manifest.name} is already installed as ${row.id} (${row.version}); change it with PATCH or upgrade, or uninstall it first`);
      }
    }
    const id = newId('installation');
    await tx.sql`insert into public.installation_routes (installation_id, org_id) values (${id}, ${ctx.tenant.id})`;
    await storeSecrets(deps, tx, ctx, id, request.secrets);
    await emitSystem(deps.emit, ctx, tx, {
      type: 'installation.requested',
      subject: installationSubject(id),
      payload: {
        installation_id: id,
        package: manifest.name,
        version: manifest.version,
        config: request.config,
        secrets: Object.keys(request.secrets).sort(),
        backfill_from: request.backfill_from ?? null,
      },
      dedupe_key: `installation:${id}:requested`,
    });
    await enqueueInstallationJob(tx.sql, ctx.tenant, { id, pending: { operation: 'install', version: manifest.version, attempt: 1 } }, ctx.traceparent);
    return { installation: (await findInstallation(tx.sql, ctx.tenant.schema, id))!, created: true };
  });
}

/** Reads and locks an installation for a change; 404 for an unknown id (or one of another shape). */
async function lockInstallation(tx: Tx, ctx: VerbContext, id: string): Promise<InstallationRow> {
  const row = isId('installation', id) ? await findInstallation(tx.sql, ctx.tenant.schema, id, { lock: true }) : undefined;
  if (!row) throw notFound('installation');
  return row;
}

const transition = (message: string) => new DomainError('invalid_transition', message);
const refOf = (row: InstallationRow) => ({ installation_id: row.id, package: row.package, version: row.version });

function requireIdle(row: InstallationRow, doing: string): void {
  if (row.status === 'uninstalled') throw transition(`the installation is uninstalled; it cannot ${doing}`);
  if (row.pending) throw transition(`the installation is busy: its ${row.pending.operation} to ${row.pending.version} is running`);
}

/** PATCH: a new config (checked against the installed version's schema) and/or secrets. */
export async function configureInstallation(deps: InstallationDeps, { ctx, input }: VerbCall<{ id: string; body: unknown }>): Promise<Installation> {
  const change = parse(ConfigureInput, input.body);
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const row = await lockInstallation(tx, ctx, input.id);
    requireIdle(row, 'be changed');
    const manifest = deps.registry.getVersion(row.package, row.version)?.manifest;
    if (!manifest) throw new DomainError('unavailable', `${row.package}@${row.version} is not in the registry`);
    const config = change.config ?? row.config;
    if (change.config) checkConfig(manifest, config, 'the config');
    const secrets = change.secrets ?? {};
    checkSecretNames(manifest, secrets);
    await storeSecrets(deps, tx, ctx, row.id, secrets);
    await emitSystem(deps.emit, ctx, tx, {
      type: 'installation.configured',
      subject: installationSubject(row.id),
      payload: { ...refOf(row), config, secrets: [...new Set([...row.secrets, ...Object.keys(secrets)])].sort() },
      dedupe_key: `installation:${row.id}:configured:${row.last_signal_id}`,
    });
    return (await findInstallation(tx.sql, ctx.tenant.schema, row.id))!;
  });
}

/**
 * Requests an upgrade to `version`, with the config for it: `config` when
 * given, else the existing one. Either is checked against the new version's
 * schema first: when it does not fit, 422 lists exactly what must change
 * (JSON pointers under `/config`) and nothing is recorded. The new config
 * replaces the old only when the upgrade job succeeds, with the version.
 * `secrets` are for the ones the new version adds (the old version's are
 * changed with PATCH, so a failed upgrade changes nothing the old one uses).
 */
export async function upgradeInstallation(deps: InstallationDeps, { ctx, input }: VerbCall<{ id: string; body: unknown }>): Promise<Installation> {
  const { version, config: given, secrets = {} } = parse(UpgradeInput, input.body);
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const row = await lockInstallation(tx, ctx, input.id);
    requireIdle(row, 'be upgraded');
    if (row.status !== 'installed' && row.status !== 'disabled') throw transition(`only an installed or disabled installation can be upgraded; this one is ${row.status}: retry its install first`);
    if (row.version === version) throw transition(`the installation is already at ${version}`);
    const manifest = deps.registry.installable(row.package, version);
    const config = given ?? row.config;
    checkConfig(manifest, config, given ? 'the config' : `the installation's config`);
    checkSecretNames(manifest, secrets);
    await checkUpgradeSecrets(deps, tx, ctx, row, manifest, secrets);
    await storeSecrets(deps, tx, ctx, row.id, secrets);
    await emitSystem(deps.emit, ctx, tx, {
      type: 'installation.upgrade_requested',
      subject: installationSubject(row.id),
      payload: { ...refOf(row), version, attempt: 1, config, secrets: [...new Set([...row.secrets, ...Object.keys(secrets)])].sort() },
      dedupe_key: `installation:${row.id}:upgrade:${version}:${row.last_signal_id}`,
    });
    const pending = { operation: 'upgrade' as const, version, attempt: 1, config };
    await enqueueInstallationJob(tx.sql, ctx.tenant, { id: row.id, pending }, ctx.traceparent);
    return (await findInstallation(tx.sql, ctx.tenant.schema, row.id))!;
  });
}

/**
 * An upgrade's secrets: only ones the installed version does not declare
 * (it keeps reading its own until the upgrade lands), and every secret the
 * new version requires must be stored (for the installation or the org) or given.
 */
async function checkUpgradeSecrets(deps: InstallationDeps, tx: Tx, ctx: VerbContext, row: InstallationRow, manifest: Manifest, secrets: Record<string, string>): Promise<void> {
  const installed = deps.registry.getVersion(row.package, row.version)?.manifest;
  const own = new Set(installed?.secrets.map((secret) => secret.name) ?? []);
  const changed = Object.keys(secrets).filter((name) => own.has(name));
  if (changed.length > 0) {
    throw new DomainError('validation_failed', `${row.package}@${row.version} uses these secrets too; change them with PATCH`, changed.map((name) => ({ path: `/secrets/${name}`, message: `a secret of the installed version; change it with PATCH …/installations/${row.id}` })));
  }
  const stored = await tx.sql<{ name: string }[]>`
    select distinct name from ${tx.sql(`${ctx.tenant.schema}.secrets`)} where owner = any(${[row.id, 'org']}::text[])`;
  const have = new Set([...stored.map(({ name }) => name), ...Object.keys(secrets)]);
  const missing = manifest.secrets.filter((secret) => secret.required && !have.has(secret.name));
  if (missing.length > 0) {
    throw new DomainError('validation_failed', `${manifest.name}@${manifest.version} requires secrets the installation does not have`, missing.map((secret) => ({ path: `/secrets/${secret.name}`, message: `required by ${manifest.version}; give it with the upgrade` })));
  }
}

/** Runs a failed install, upgrade or uninstall again, as its next attempt. */
export async function retryInstallation(deps: InstallationDeps, { ctx, input }: VerbCall<{ id: string }>): Promise<Installation> {
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const row = await lockInstallation(tx, ctx, input.id);
    requireIdle(row, 'be retried');
    if (!row.error) throw transition('nothing failed: there is nothing to retry');
    const { operation, version, attempt, config } = row.error;
    const pending = { operation, version, attempt: attempt + 1, ...(config ? { config } : {}) };
    await emitSystem(deps.emit, ctx, tx, {
      type: 'installation.retry_requested',
      subject: installationSubject(row.id),
      payload: { ...refOf(row), ...pending },
      dedupe_key: `installation:${row.id}:retry:${pending.operation}:${pending.version}:${pending.attempt}`,
    });
    await enqueueInstallationJob(tx.sql, ctx.tenant, { id: row.id, pending }, ctx.traceparent);
    return (await findInstallation(tx.sql, ctx.tenant.schema, row.id))!;
  });
}

/** Requests an uninstall: its job stops the package and removes its secrets; its signals stay in the log. */
export async function uninstallInstallation(deps: InstallationDeps, { ctx, input }: VerbCall<{ id: string }>): Promise<Installation> {
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const row = await lockInstallation(tx, ctx, input.id);
    requireIdle(row, 'be uninstalled');
    const pending = { operation: 'uninstall' as const, version: row.version, attempt: 1 };
    await emitSystem(deps.emit, ctx, tx, {
      type: 'installation.uninstall_requested',
      subject: installationSubject(row.id),
      payload: { ...refOf(row), attempt: 1 },
      dedupe_key: `installation:${row.id}:uninstall`,
    });
    await enqueueInstallationJob(tx.sql, ctx.tenant, { id: row.id, pending }, ctx.traceparent);
    return (await findInstallation(tx.sql, ctx.tenant.schema, row.id))!;
  });
}

/** Disable (installed → disabled) or enable (disabled → installed), at once. */
export async function setInstallationEnabled(
  deps: InstallationDeps,
  { ctx, input }: VerbCall<{ id: string; enabled: boolean }>,
): Promise<Installation> {
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const row = await lockInstallation(tx, ctx, input.id);
    requireIdle(row, input.enabled ? 'be enabled' : 'be disabled');
    const from = input.enabled ? 'disabled' : 'installed';
    if (row.status !== from) throw transition(`only a ${from} installation can be ${input.enabled ? 'enabled' : 'disabled'}; this one is ${row.status}`);
    const type = input.enabled ? 'installation.enabled' : 'installation.disabled';
    await emitSystem(deps.emit, ctx, tx, { type, subject: installationSubject(row.id), payload: refOf(row), dedupe_key: `installation:${row.id}:${type}:${row.last_signal_id}` });
    return (await findInstallation(tx.sql, ctx.tenant.schema, row.id))!;
  });
}
