/**
 * A package version's config form, generated from its JSON Schema: a field
 * per property, typed by the schema, prefilled from a config, with each of
 * the verb's errors (JSON pointers under `/config` or `/secrets`) shown at
 * its field and in a summary that links to it. Also the password fields of
 * the declared secrets, which are never prefilled.
 */
import { DomainError, type FieldError } from '../../core/errors.ts';
import type { Manifest } from '../../packages/manifest.ts';

interface Property {
  type?: string | string[];
  enum?: unknown[];
  description?: string;
  items?: { type?: string };
}

type Kind = 'boolean' | 'number' | 'list' | 'enum' | 'json' | 'text';

function propertiesOf(manifest: Manifest): Array<[string, Property, boolean]> {
  const schema = manifest.config as { properties?: Record<string, Property>; required?: string[] };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => [name, property, (schema.required ?? []).includes(name)]);
}

function kindOf(property: Property): Kind {
  const type = Array.isArray(property.type) ? property.type[0] : property.type;
  if (property.enum) return 'enum';
  if (type === 'boolean') return 'boolean';
  if (type === 'number' || type === 'integer') return 'number';
  if (type === 'array' && property.items?.type === 'string') return 'list';
  if (type === 'string' || type === undefined) return 'text';
  return 'json';
}

/** The form's fields back into a config object, each by its schema type; bad JSON is a field error. */
export function configFrom(manifest: Manifest, form: Record<string, string>): Record<string, unknown> {
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

/** A config as the form's fields, to prefill it: the inverse of `configFrom`. */
export function formOfConfig(manifest: Manifest, config: Record<string, unknown>): Record<string, string> {
  const form: Record<string, string> = {};
  for (const [name, property] of propertiesOf(manifest)) {
    const value = config[name];
    if (value === undefined) continue;
    const kind = kindOf(property);
    if (kind === 'boolean') {
      if (value === true) form[`config.${name}`] = 'on';
    } else if (kind === 'list' && Array.isArray(value)) form[`config.${name}`] = value.join(', ');
    else if (kind === 'json' || typeof value === 'object') form[`config.${name}`] = JSON.stringify(value);
    else form[`config.${name}`] = String(value);
  }
  return form;
}

const fieldId = (path: string): string | undefined => {
  const match = /^\/(config|secrets)\/([^/]+)/.exec(path);
  return match ? `${match[1] === 'config' ? 'config' : 'secret'}-${match[2]}` : undefined;
};

/** The errors whose JSON pointer falls on field `id`. */
const errorsAt = (errors: FieldError[] | undefined, id: string) => (errors ?? []).filter((error) => fieldId(error.path) === id);

function FieldErrors({ id, errors }: { id: string; errors: FieldError[] }) {
  if (errors.length === 0) return null;
  return <span class="field-error" id={`${id}-error`}>{errors.map((error) => error.message).join('; ')}</span>;
}

/** What a field is described by: its errors and its hint. */
const describedBy = (id: string, errors: FieldError[], hint: boolean) =>
  [errors.length > 0 ? `${id}-error` : '', hint ? `${id}-hint` : ''].filter(Boolean).join(' ') || undefined;

/** The refusal, every error listed with a link to its field when it has one on this page. */
/** The ids of the fields a form of `manifest` shows: what an error summary can link to. */
export function fieldIdsOf(manifest: Manifest, { secrets }: { secrets: boolean }): Set<string> {
  const ids = propertiesOf(manifest).map(([name]) => `config-${name}`);
  if (secrets) ids.push(...manifest.secrets.map((secret) => `secret-${secret.name}`));
  return new Set(ids);
}

/**
 * `fields`: the ids of the form's fields. An error on a path the form has no
 * field for (a property the schema no longer has, say) is listed unlinked.
 */
export function ErrorSummary({ title, errors, fields, id = 'form-errors' }: { title: string; errors: FieldError[]; fields: Set<string>; id?: string }) {
  return (
    <section class="error" role="alert" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      <ul>
        {errors.map((error) => {
          const field = fieldId(error.path);
          return (
            <li>
              {field && fields.has(field) ? <a href={`#${field}`}><code>{error.path}</code></a> : <code>{error.path || '/'}</code>}: {error.message}
            </li>
          );
        })}
      </ul>
    </section>
  );
}

export function ConfigFields({ manifest, form, errors }: { manifest: Manifest; form: Record<string, string>; errors?: FieldError[] | undefined }) {
  return (
    <>
      {propertiesOf(manifest).map(([name, property, required]) => {
        const id = `config-${name}`;
        const kind = kindOf(property);
        const value = form[`config.${name}`] ?? '';
        const mine = errorsAt(errors, id);
        const hint = property.description ? <span class="hint" id={`${id}-hint`}>{property.description}</span> : null;
        const common = { id, name: `config.${name}`, 'aria-invalid': mine.length > 0 ? 'true' : undefined, 'aria-describedby': describedBy(id, mine, hint !== null) } as const;
        if (kind === 'boolean') {
          return (
            <>
              <label class="check"><input type="checkbox" {...common} checked={value === 'on'} /> {name}</label>
              <FieldErrors id={id} errors={mine} />
              {hint}
            </>
          );
        }
        const label = `${name}${required ? '' : ' (optional)'}${kind === 'list' ? ' (comma-separated)' : kind === 'json' ? ' (JSON)' : ''}`;
        return (
          <>
            <label for={id}>{label}</label>
            {kind === 'enum' ? (
              <select {...common}>{(property.enum ?? []).map((option) => <option value={String(option)} selected={String(option) === value}>{String(option)}</option>)}</select>
            ) : kind === 'json' ? (
              <textarea {...common} rows={4}>{value}</textarea>
            ) : (
              <input {...common} type={kind === 'number' ? 'number' : 'text'} value={value} required={required && kind !== 'list'} />
            )}
            <FieldErrors id={id} errors={mine} />
            {hint}
          </>
        );
      })}
    </>
  );
}

/** A password field per declared secret, never prefilled. */
export function SecretFields({ manifest, errors }: { manifest: Manifest; errors?: FieldError[] | undefined }) {
  return (
    <>
      {manifest.secrets.map((secret) => {
        const id = `secret-${secret.name}`;
        const mine = errorsAt(errors, id);
        return (
          <>
            <label for={id}>{`Secret ${secret.name}`}</label>
            <input
              id={id}
              name={`secret.${secret.name}`}
              type="password"
              autocomplete="off"
              aria-invalid={mine.length > 0 ? 'true' : undefined}
              aria-describedby={describedBy(id, mine, Boolean(secret.description))}
            />
            <FieldErrors id={id} errors={mine} />
            {secret.description ? <span class="hint" id={`${id}-hint`}>{secret.description}</span> : null}
          </>
        );
      })}
    </>
  );
}

/** The secret fields that were filled in; empty ones are left as they are. */
export function secretsFrom(manifest: Manifest, form: Record<string, string>): Record<string, string> {
  return Object.fromEntries(manifest.secrets.map((secret) => [secret.name, form[`secret.${secret.name}`] ?? '']).filter(([, value]) => value !== ''));
}
