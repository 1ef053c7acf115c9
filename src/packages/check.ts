/**
 * Checking a manifest whole: its shape (zod), then everything that needs the
 * rest of the manifest or the platform to judge — each JSON Schema compiled
 * with ajv, each CEL expression compiled in its scope, scopes against the
 * executors that exist, outputs against scopes and declared signals, and
 * `requires` against the registry. Every problem is listed with its path.
 */
import semver from 'semver';
import { z } from 'zod';
import type { FieldError } from '../core/errors.ts';
import { schemaOf, type ExecutorRegistry } from '../executors/registry.ts';
import { matchesKind } from '../policy/glob.ts';
import { isReservedType } from '../signals/model.ts';
import { compileManifestCel, type CelResult, type CelScope } from './cel.ts';
import { compileJsonSchema } from './json-schema.ts';
import { Manifest, type EmitOutput, type ProposeOutput } from './manifest.ts';

export interface CheckContext {
  executors: Pick<ExecutorRegistry, 'kinds' | 'require'>;
  /** The published versions of another package, yanked ones included; undefined when it has none. */
  versionsOf?(name: string): readonly string[] | undefined;
}

export type ManifestCheck = { ok: true; manifest: Manifest } | { ok: false; errors: FieldError[] };

/** The longest policy rule id (src/policy/model.ts): a package's rules are installed as `<package>.<id>`. */
const POLICY_ID_LIMIT = 63;

/** Validates `raw` as a manifest; `ok: false` lists every problem found. */
export function checkManifest(raw: unknown, context: CheckContext): ManifestCheck {
  const parsed = Manifest.safeParse(raw);
  if (!parsed.success) {
    return { ok: false, errors: parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })) };
  }
  const manifest = parsed.data;
  const errors: FieldError[] = [];
  const fail = (path: string, message: string) => errors.push({ path, message });
  const cel = (path: string, expression: string | undefined, scope: CelScope, result: CelResult = 'any') => {
    if (expression === undefined) return;
    const compiled = compileManifestCel(expression, scope, result);
    if (!compiled.ok) fail(path, compiled.message);
  };

  checkRequires(manifest, context, fail);
  const config = compileJsonSchema(manifest.config);
  if (!config.ok) fail('config', config.message);
  else if (manifest.config.type !== 'object') fail('config.type', 'the config schema must describe an object');

  unique(manifest.secrets.map((secret) => secret.name), 'secrets', 'name', fail);
  unique(manifest.scopes, 'scopes', null, fail);
  const known = new Set(context.executors.kinds());
  manifest.scopes.forEach((kind, index) => {
    if (!known.has(kind)) fail(`scopes.${index}`, `no executor serves directive kind ${kind}`);
  });

  unique(manifest.signals.map((signal) => signal.type), 'signals', 'type', fail);
  manifest.signals.forEach((signal, index) => {
    if (isReservedType(signal.type)) fail(`signals.${index}.type`, `${signal.type} is a type signalbus itself emits`);
    const payload = compileJsonSchema(signal.payload);
    if (!payload.ok) fail(`signals.${index}.payload`, payload.message);
  });

  const declared = new Set(manifest.signals.map((signal) => signal.type));
  const secrets = new Set(manifest.secrets.map((secret) => secret.name));
  const outputs = (path: string, scope: CelScope, item: { propose?: ProposeOutput; emit?: EmitOutput }) => {
    if (item.propose) checkPropose(`${path}.propose`, item.propose, manifest.scopes, context, scope, fail, cel);
    if (item.emit) {
      if (!declared.has(item.emit.type)) fail(`${path}.emit.type`, `${item.emit.type} is not among the package's signals`);
      for (const [field, expression] of Object.entries(item.emit.payload)) cel(`${path}.emit.payload.${field}`, expression, scope);
      cel(`${path}.emit.subject`, item.emit.subject, scope, 'string');
      cel(`${path}.emit.key`, item.emit.key, scope, 'string');
    }
  };

  unique(manifest.handlers.map((rule) => rule.id), 'handlers', 'id', fail);
  manifest.handlers.forEach((rule, index) => {
    cel(`handlers.${index}.when`, rule.when, 'handler', 'bool');
    outputs(`handlers.${index}`, 'handler', rule);
  });
  unique(manifest.steps.map((step) => step.id), 'steps', 'id', fail);
  manifest.steps.forEach((step, index) => {
    cel(`steps.${index}.when`, step.when, 'step', 'bool');
    outputs(`steps.${index}`, 'step', step);
  });

  unique(manifest.policies.map((rule) => rule.id), 'policies', 'id', fail);
  manifest.policies.forEach((rule, index) => {
    if (manifest.name.length + 1 + rule.id.length > POLICY_ID_LIMIT) {
      fail(`policies.${index}.id`, `installed as ${manifest.name}.${rule.id}, which is longer than ${POLICY_ID_LIMIT} characters`);
    }
    // A package's rules decide only its own kinds: never `*`, nothing outside its scopes.
    if (rule.match === '*' || !manifest.scopes.some((kind) => matchesKind(rule.match, kind))) {
      fail(`policies.${index}.match`, `${rule.match} must name one of the package's scopes, or a prefix of them`);
    }
    cel(`policies.${index}.when`, rule.when, 'policy', 'bool');
  });

  manifest.projections.forEach((projection, index) => {
    const path = `projections.${index}`;
    cel(`${path}.when`, projection.when, 'projection', 'bool');
    cel(`${path}.key`, projection.key, 'projection', 'string');
    for (const [field, expression] of Object.entries(projection.fields)) cel(`${path}.fields.${field}`, expression, 'projection');
  });

  if (manifest.webhook) {
    const hook = manifest.webhook;
    const scope: CelScope = hook.scheme === 'google-pubsub' ? 'webhook-pubsub' : 'webhook';
    if (hook.scheme !== 'google-pubsub' && !secrets.has(hook.secret)) fail('webhook.secret', `${hook.secret} is not among the package's secrets`);
    cel('webhook.when', hook.when, scope, 'bool');
    cel('webhook.event.id', hook.event.id, scope, 'string');
    cel('webhook.event.type', hook.event.type, scope, 'string');
    cel('webhook.event.occurred_at', hook.event.occurred_at, scope, 'occurred_at');
    cel('webhook.event.subject', hook.event.subject, scope, 'string');
    cel('webhook.event.payload', hook.event.payload, scope);
  }

  return errors.length > 0 ? { ok: false, errors } : { ok: true, manifest };
}

function checkRequires(manifest: Manifest, context: CheckContext, fail: (path: string, message: string) => void) {
  for (const [name, range] of Object.entries(manifest.requires)) {
    const path = `requires.${name}`;
    if (semver.validRange(range) === null) {
      fail(path, `${range} is not a semver range`);
    } else if (name === manifest.name) {
      fail(path, 'a package cannot require itself');
    } else if (context.versionsOf) {
      const versions = context.versionsOf(name);
      if (!versions || versions.length === 0) fail(path, `no package ${name} is published`);
      else if (semver.maxSatisfying([...versions], range) === null) {
        fail(path, `no published version of ${name} satisfies ${range} (published: ${versions.join(', ')})`);
      }
    }
  }
}

function checkPropose(
  path: string,
  propose: ProposeOutput,
  scopes: readonly string[],
  context: CheckContext,
  scope: CelScope,
  fail: (path: string, message: string) => void,
  cel: (path: string, expression: string | undefined, scope: CelScope, result?: CelResult) => void,
) {
  if (!scopes.includes(propose.kind)) {
    fail(`${path}.kind`, `${propose.kind} is not among the package's scopes`);
  } else if (context.executors.kinds().includes(propose.kind)) {
    // Only an object's field names can be judged here; their values are CEL, known at run time.
    const schema = schemaOf(context.executors.require(propose.kind), propose.kind);
    if (schema instanceof z.ZodObject) {
      const fields = new Set(Object.keys(schema.shape));
      for (const field of Object.keys(propose.params)) {
        if (!fields.has(field)) fail(`${path}.params.${field}`, `${propose.kind} has no param ${field}`);
      }
    }
  }
  for (const [field, expression] of Object.entries(propose.params)) cel(`${path}.params.${field}`, expression, scope);
  cel(`${path}.key`, propose.key, scope, 'string');
}

function unique(values: readonly string[], path: string, field: string | null, fail: (path: string, message: string) => void) {
  const seen = new Set<string>();
  values.forEach((value, index) => {
    if (seen.has(value)) fail(field ? `${path}.${index}.${field}` : `${path}.${index}`, `duplicate ${value}`);
    seen.add(value);
  });
}
