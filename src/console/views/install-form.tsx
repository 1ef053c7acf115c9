/**
 * Installing a package (admin): a form generated from the package version's
 * config JSON Schema — a field per property, typed by the schema — and a
 * password field per declared secret. The install verb validates the config
 * against the schema again; its errors come back at their fields.
 */
import type { Hono } from 'hono';
import type { ConsoleSession } from '../../auth/sessions.ts';
import { DomainError, type FieldError } from '../../core/errors.ts';
import type { Manifest } from '../../packages/manifest.ts';
import { installPackage } from '../../packages/installations.ts';
import { formOf, need, tenantOf, verbContextOf, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Csrf, Page } from '../layout.tsx';
import { ConfigFields, configFrom, ErrorSummary, fieldIdsOf, SecretFields, secretsFrom } from './config-form.tsx';

function InstallPage({ c, session, manifest, form, errors }: { c: ConsoleContext; session: ConsoleSession; manifest: Manifest; form: Record<string, string>; errors?: FieldError[] }) {
  const org = tenantOf(c).slug;
  return (
    <Page title={`Install ${manifest.name} ${manifest.version}`} session={session} org={org} current="installations">
      <p>{manifest.description}</p>
      {errors ? <ErrorSummary title="The installation was refused" errors={errors} fields={fieldIdsOf(manifest, { secrets: true })} /> : null}
      <form method="post" action={`/console/orgs/${org}/installations/new?package=${encodeURIComponent(manifest.name)}&version=${encodeURIComponent(manifest.version)}`} class="stack narrow">
        <Csrf session={session} />
        <ConfigFields manifest={manifest} form={form} errors={errors} />
        <SecretFields manifest={manifest} errors={errors} />
        <button type="submit">Install</button>
      </form>
    </Page>
  );
}

function manifestOf(c: ConsoleContext): Manifest {
  return c.get('deps').packages.installable(c.req.query('package') ?? '', c.req.query('version') ?? '');
}

export function registerInstallForm(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/installations/new', (c) => {
    const session = need(c, 'org:admin');
    return c.html(<InstallPage c={c} session={session} manifest={manifestOf(c)} form={{}} />);
  });

  app.post('/orgs/:org/installations/new', async (c) => {
    const session = need(c, 'org:admin');
    const manifest = manifestOf(c);
    const form = formOf(c);
    try {
      const { installation } = await installPackage(c.get('deps').bus.installations, {
        ctx: verbContextOf(c),
        input: { package: manifest.name, version: manifest.version, config: configFrom(manifest, form), secrets: secretsFrom(manifest, form) },
      });
      return c.redirect(`/console/orgs/${tenantOf(c).slug}/installations/${installation.id}`, 303);
    } catch (error) {
      if (!(error instanceof DomainError) || error.status !== 422) throw error;
      return c.html(<InstallPage c={c} session={session} manifest={manifest} form={form} errors={error.errors ?? [{ path: '', message: error.message }]} />, 422);
    }
  });
}
