/**
 * An installation's admin actions, through the same verbs as the API:
 * reconfigure (a form generated from the installed version's config schema,
 * prefilled, with the schema's errors at their fields), set or rotate its
 * secrets, upgrade (when the new version's schema refuses the current config
 * or it needs new secrets: its own form, prefilled, to upgrade in one step),
 * retry, disable, enable and uninstall. Each needs the admin role and the
 * session's CSRF token (checkForm); another org's installation id is 404.
 */
import type { Hono } from 'hono';
import type { ConsoleSession } from '../../auth/sessions.ts';
import { DomainError, type FieldError } from '../../core/errors.ts';
import { getInstallation, type Installation } from '../../packages/installation-read.ts';
import {
  configureInstallation,
  retryInstallation,
  setInstallationEnabled,
  uninstallInstallation,
  upgradeInstallation,
} from '../../packages/installations.ts';
import type { Manifest } from '../../packages/manifest.ts';
import { formOf, need, tenantOf, verbContextOf, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Csrf, Page } from '../layout.tsx';
import { withNotice } from '../notices.ts';
import { ConfigFields, configFrom, ErrorSummary, fieldIdsOf, formOfConfig, SecretFields, secretsFrom } from './config-form.tsx';
import { installationId } from './installations.tsx';

const invalid = (error: unknown): error is DomainError => error instanceof DomainError && error.status === 422;
const errorsOf = (error: DomainError): FieldError[] => error.errors ?? [{ path: '', message: error.message }];

/** The installation and the manifest of its installed version. */
async function loadInstallation(c: ConsoleContext, id: string): Promise<{ installation: Installation; manifest: Manifest }> {
  const installation = await getInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id } });
  const manifest = c.get('deps').packages.getVersion(installation.package, installation.version)?.manifest;
  if (!manifest) throw new DomainError('unavailable', `${installation.package}@${installation.version} is not in the registry`);
  return { installation, manifest };
}

function ConfigurePage({ c, session, installation, manifest, form, errors }: {
  c: ConsoleContext;
  session: ConsoleSession;
  installation: Installation;
  manifest: Manifest;
  form: Record<string, string>;
  errors?: FieldError[];
}) {
  const base = `/console/orgs/${tenantOf(c).slug}/installations/${installation.id}`;
  return (
    <Page title={`Reconfigure ${installation.package} ${installation.version}`} session={session} org={tenantOf(c).slug} current="installations">
      <p>
        The config replaces the current one and must fit the config schema of {installation.package} {installation.version}.{' '}
        <a href={base}>Back to the installation</a>
      </p>
      {errors ? <ErrorSummary title="The config was refused; nothing was changed" errors={errors} fields={fieldIdsOf(manifest, { secrets: false })} /> : null}
      <form method="post" action={`${base}/configure`} class="stack narrow">
        <Csrf session={session} />
        <ConfigFields manifest={manifest} form={form} errors={errors} />
        <button type="submit">Save config</button>
      </form>
    </Page>
  );
}

/**
 * The upgrade refusal as a report of what to change. ajv names no property
 * for `additionalProperties`: the config's keys the new schema lacks are listed instead.
 */
function upgradeReport(c: ConsoleContext, installation: Installation, version: string, errors: FieldError[]): FieldError[] {
  const target = c.get('deps').packages.getVersion(installation.package, version)?.manifest;
  const known = Object.keys((target?.config as { properties?: Record<string, unknown> } | undefined)?.properties ?? {});
  return errors.flatMap((error) => {
    if (!target || error.path !== '/config' || !/additional properties/.test(error.message)) return [error];
    const extra = Object.keys(installation.config).filter((name) => !known.includes(name));
    return extra.length === 0 ? [error] : extra.map((name) => ({ path: `/config/${name}`, message: `not in the config schema of ${version}: remove it` }));
  });
}

/** The target version's manifest with only the secrets the installed version lacks: the ones an upgrade must bring. */
function upgradeTarget(c: ConsoleContext, installation: Installation, version: string): Manifest {
  const target = c.get('deps').packages.getVersion(installation.package, version)?.manifest;
  if (!target) throw new DomainError('validation_failed', `${installation.package} has no version ${version}`, [{ path: '/version', message: 'not in the registry' }]);
  const installed = c.get('deps').packages.getVersion(installation.package, installation.version)?.manifest;
  const held = new Set((installed?.secrets ?? []).map((secret) => secret.name));
  return { ...target, secrets: target.secrets.filter((secret) => !held.has(secret.name)) };
}

/** An upgrade the current config does not fit: the new version's form, prefilled, submitted with the upgrade. */
function UpgradePage({ c, session, installation, target, form, errors }: {
  c: ConsoleContext;
  session: ConsoleSession;
  installation: Installation;
  target: Manifest;
  form: Record<string, string>;
  errors: FieldError[];
}) {
  const base = `/console/orgs/${tenantOf(c).slug}/installations/${installation.id}`;
  return (
    <Page title={`Upgrade ${installation.package} to ${target.version}`} session={session} org={tenantOf(c).slug} current="installations">
      <ErrorSummary
        id="upgrade-refused"
        title={`Upgrade to ${target.version} refused: the config must change first`}
        errors={errors}
        fields={fieldIdsOf(target, { secrets: target.secrets.length > 0 })}
      />
      <p>
        Nothing was changed. The form below is the config schema of {installation.package} {target.version}, filled with the current config;
        the new config and version apply together when the upgrade succeeds. <a href={base}>Back to the installation</a>
      </p>
      <form method="post" action={`${base}/upgrade`} class="stack narrow">
        <Csrf session={session} />
        <input type="hidden" name="version" value={target.version} />
        <input type="hidden" name="with_config" value="1" />
        <ConfigFields manifest={target} form={form} errors={errors} />
        {target.secrets.length > 0 ? <SecretFields manifest={target} errors={errors} /> : null}
        <button type="submit">{`Upgrade to ${target.version}`}</button>
      </form>
    </Page>
  );
}

export function registerInstallationActions(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/installations/:id/configure', async (c) => {
    const session = need(c, 'org:admin');
    const { installation, manifest } = await loadInstallation(c, installationId(c.req.param('id')));
    return c.html(<ConfigurePage c={c} session={session} installation={installation} manifest={manifest} form={formOfConfig(manifest, installation.config)} />);
  });

  app.post('/orgs/:org/installations/:id/configure', async (c) => {
    const session = need(c, 'org:admin');
    const id = installationId(c.req.param('id'));
    const { installation, manifest } = await loadInstallation(c, id);
    const form = formOf(c);
    try {
      await configureInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id, body: { config: configFrom(manifest, form) } } });
    } catch (error) {
      if (!invalid(error)) throw error;
      return c.html(<ConfigurePage c={c} session={session} installation={installation} manifest={manifest} form={form} errors={errorsOf(error)} />, 422);
    }
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/installations/${id}`, 'installation_configured'), 303);
  });

  app.post('/orgs/:org/installations/:id/secrets', async (c) => {
    need(c, 'org:admin');
    const id = installationId(c.req.param('id'));
    const { manifest } = await loadInstallation(c, id);
    const secrets = secretsFrom(manifest, formOf(c));
    if (Object.keys(secrets).length === 0) throw new DomainError('validation_failed', 'enter a value for at least one secret', [{ path: '/secrets', message: 'every field was empty' }]);
    await configureInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id, body: { secrets } } });
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/installations/${id}`, 'installation_secrets_set'), 303);
  });

  app.post('/orgs/:org/installations/:id/upgrade', async (c) => {
    const session = need(c, 'org:admin');
    const id = installationId(c.req.param('id'));
    const form = formOf(c);
    const version = form.version ?? '';
    const { installation } = await loadInstallation(c, id);
    const withConfig = form.with_config === '1';
    const target = withConfig ? upgradeTarget(c, installation, version) : undefined;
    const body = target ? { version, config: configFrom(target, form), secrets: secretsFrom(target, form) } : { version };
    try {
      await upgradeInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id, body } });
    } catch (error) {
      if (!invalid(error) || !error.errors?.some((item) => /^\/(config|secrets)/.test(item.path))) throw error;
      const manifest = target ?? upgradeTarget(c, installation, version);
      const errors = withConfig ? errorsOf(error) : upgradeReport(c, installation, version, errorsOf(error));
      const filled = withConfig ? form : formOfConfig(manifest, installation.config);
      return c.html(<UpgradePage c={c} session={session} installation={installation} target={manifest} form={filled} errors={errors} />, 422);
    }
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/installations/${id}`, 'installation_upgrading'), 303);
  });

  app.post('/orgs/:org/installations/:id/:action', async (c) => {
    need(c, 'org:admin');
    const id = installationId(c.req.param('id'));
    const action = c.req.param('action');
    const deps = c.get('deps').bus.installations;
    const ctx = verbContextOf(c);
    if (action === 'retry') await retryInstallation(deps, { ctx, input: { id } });
    else if (action === 'disable' || action === 'enable') await setInstallationEnabled(deps, { ctx, input: { id, enabled: action === 'enable' } });
    else if (action === 'uninstall') await uninstallInstallation(deps, { ctx, input: { id } });
    else throw new DomainError('not_found', 'no such action');
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/installations/${id}`, 'installation_changed'), 303);
  });
}
