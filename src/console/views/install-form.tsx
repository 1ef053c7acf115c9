/**
 * Installing a package (admin): a form generated from the package version's
 * config JSON Schema — a field per property, typed by the schema — and a
 * password field per declared secret. The install verb validates the config
 * against the schema again; its errors come back next to the form.
 */
import type { Hono } from 'hono';
import type { ConsoleSession } from '../../auth/sessions.ts';
import { DomainError, type FieldError } from '../../core/errors.ts';
import type { Manifest } from '../../packages/manifest.ts';
import { installPackage } from '../../packages/installations.ts';
import { formOf, need, tenantOf, verbContextOf, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Csrf, Page } from '../layout.tsx';

interface Property {
  type?: string | string[];
  enum?: unknown[];
  description?: string;
  items?: { type?: string };
}

function propertiesOf(manifest: Manifest): Array<[string, Property, boolean]> {
  const schema = manifest.config as { properties?: Record<string, Property>; required?: string[] };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => [name, property, (schema.required ?? []).includes(name)]);
}

function kindOf(property: Property): 'boolean' | 'number' | 'list' | 'enum' | 'json' | 'text' {
  const type = Array.isArray(property.type) ? property.type[0] : property.type;
  if (property.enum) return 'enum';
  if (type === 'boolean') return 'boolean';
  if (type === 'number' || type === 'integer') return 'number';
  if (type === 'array' && property.items?.type === 'string') return 'list';
  if (type === 'string' || type === undefined) return 'text';
  return 'json';
}

/** The form's fields back into a config object, each by its schema type; bad JSON is a field error. */
function configFrom(manifest: Manifest, form: Record<string, string>): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const [name, property] of propertiesOf(manifest)) {
    const raw = form[`config.${name}`];
    const kind = kindOf(property);
    if (kind === 'boolean') config[name] = raw === 'on';
    else if (raw === undefined || raw === '') continue;
    else if (kind === 'number') config[name] = Number(raw);
    else if (kind === 'list') config[name] = raw.split(',').map((item) => item.trim()).filter(Boolean);
    else if (kind === 'json') {
      try {
        config[name] = JSON.parse(raw);
      } catch {
        throw new DomainError('validation_failed', 'the config is not valid', [{ path: `/config/${name}`, message: 'not JSON' }]);
      }
    } else config[name] = raw;
  }
  // A required list left empty is an empty list, not a missing field.
  for (const [name, property, required] of propertiesOf(manifest)) if (required && kindOf(property) === 'list' && !(name in config)) config[name] = [];
  return config;
}

function InstallPage({ c, session, manifest, form, errors }: { c: ConsoleContext; session: ConsoleSession; manifest: Manifest; form: Record<string, string>; errors?: FieldError[] }) {
  const org = tenantOf(c).slug;
  return (
    <Page title={`Install ${manifest.name} ${manifest.version}`} session={session} org={org} current="installations">
      <p>{manifest.description}</p>
      {errors ? (
        <section class="error" role="alert" aria-labelledby="install-errors">
          <h2 id="install-errors">The installation was refused</h2>
          <ul>{errors.map((error) => <li><code>{error.path}</code>: {error.message}</li>)}</ul>
        </section>
      ) : null}
      <form method="post" action={`/console/orgs/${org}/installations/new?package=${encodeURIComponent(manifest.name)}&version=${encodeURIComponent(manifest.version)}`} class="stack narrow">
        <Csrf session={session} />
        {propertiesOf(manifest).map(([name, property, required]) => {
          const id = `config-${name}`;
          const kind = kindOf(property);
          const value = form[`config.${name}`] ?? '';
          const label = `${name}${required ? '' : ' (optional)'}${kind === 'list' ? ' (comma-separated)' : kind === 'json' ? ' (JSON)' : ''}`;
          return kind === 'boolean' ? (
            <label class="check"><input type="checkbox" name={`config.${name}`} checked={value === 'on'} /> {name}</label>
          ) : (
            <>
              <label for={id}>{label}</label>
              {kind === 'enum' ? (
                <select id={id} name={`config.${name}`}>{(property.enum ?? []).map((option) => <option value={String(option)} selected={String(option) === value}>{String(option)}</option>)}</select>
              ) : kind === 'json' ? (
                <textarea id={id} name={`config.${name}`} rows={4}>{value}</textarea>
              ) : (
                <input id={id} name={`config.${name}`} type={kind === 'number' ? 'number' : 'text'} value={value} required={required && kind !== 'list'} />
              )}
              {property.description ? <span class="hint">{property.description}</span> : null}
            </>
          );
        })}
        {manifest.secrets.map((secret) => (
          <>
            <label for={`secret-${secret.name}`}>{`Secret ${secret.name}`}</label>
            <input id={`secret-${secret.name}`} name={`secret.${secret.name}`} type="password" autocomplete="off" />
            {secret.description ? <span class="hint">{secret.description}</span> : null}
          </>
        ))}
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
      const secrets = Object.fromEntries(manifest.secrets.map((secret) => [secret.name, form[`secret.${secret.name}`] ?? '']).filter(([, value]) => value !== ''));
      const { installation } = await installPackage(c.get('deps').bus.installations, {
        ctx: verbContextOf(c),
        input: { package: manifest.name, version: manifest.version, config: configFrom(manifest, form), secrets },
      });
      return c.redirect(`/console/orgs/${tenantOf(c).slug}/installations/${installation.id}`, 303);
    } catch (error) {
      if (!(error instanceof DomainError) || error.status !== 422) throw error;
      return c.html(<InstallPage c={c} session={session} manifest={manifest} form={form} errors={error.errors ?? [{ path: '', message: error.message }]} />, 422);
    }
  });
}
