/**
 * The package manifest (`packages-registry/<name>/<version>/manifest.json`):
 * its shape as a zod schema, which is also published as JSON Schema for
 * editors. This is structure only; what needs the rest of the manifest, the
 * executors or the registry to judge (CEL, JSON Schemas, scopes, requires)
 * is checked in `check.ts`.
 */
import { z } from 'zod';
import { PolicyRule } from '../policy/model.ts';
import { SIGNAL_TYPE_PATTERN } from '../signals/model.ts';

/** semver.org's own expression: exactly what `semver.valid` accepts, without a leading `v`. */
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export const PackageName = z
  .string()
  .max(40)
  .regex(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, 'a package name is lowercase words joined by single hyphens, e.g. stripe-revenue');
export const PackageVersion = z.string().max(100).regex(SEMVER, 'a semantic version such as 1.2.3 (no leading v)');

/** A CEL expression; which variables it sees depends on where it stands (docs/packages.md). */
export const Cel = z.string().min(1).max(4000).meta({ description: 'A CEL expression' });

/** A JSON Schema (2020-12), compiled with ajv when the manifest is checked. */
export const JsonSchemaDocument = z
  .record(z.string(), z.unknown())
  .meta({ description: 'A JSON Schema (2020-12)', $ref: 'https://json-schema.org/draft/2020-12/schema' });

const Identifier = (what: string) =>
  z.string().regex(/^[a-z][a-z0-9_-]{0,39}$/, `${what} is lowercase letters, digits, _ and - (max 40), starting with a letter`);

/** The vault's secret names. */
export const SecretName = z.string().regex(/^[a-z][a-z0-9_.-]{0,62}$/, 'a secret name matches ^[a-z][a-z0-9_.-]{0,62}$');
const DirectiveKind = z.string().max(200).regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/, 'a directive kind such as stripe.refund.create');
const SignalType = z.string().max(200).regex(SIGNAL_TYPE_PATTERN, 'a signal type is dotted lowercase segments, e.g. stripe.charge.refunded');
/** An exact signal type or a prefix ending in `.*` (`stripe.*`). */
export const SignalPattern = z
  .string()
  .max(200)
  .regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)$|^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/, 'a signal type, or a prefix followed by .* (stripe.*)');
const CelFields = z.record(z.string().min(1).max(100), Cel);

export const Secret = z.strictObject({
  name: SecretName,
  description: z.string().min(1).max(500),
  required: z.boolean().default(true),
});

export const SignalDeclaration = z.strictObject({
  type: SignalType,
  description: z.string().max(500).optional(),
  payload: JsonSchemaDocument,
});

/** Proposes a directive: `params` is one CEL expression per field; `key` tells a rule's outputs apart. */
export const ProposeOutput = z.strictObject({
  kind: DirectiveKind,
  params: CelFields,
  key: Cel.optional(),
});

/** Emits a signal of a type the package declares: `payload` is one CEL expression per field. */
export const EmitOutput = z.strictObject({
  type: SignalType,
  subject: Cel.optional(),
  payload: CelFields,
  key: Cel.optional(),
});

const oneOutput = (value: { propose?: unknown; emit?: unknown }, ctx: z.RefinementCtx) => {
  if ((value.propose === undefined) === (value.emit === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['propose'], message: 'exactly one of propose or emit is required' });
  }
};

export const HandlerRule = z
  .strictObject({
    id: Identifier('a rule id'),
    description: z.string().max(500).optional(),
    on: z.array(SignalPattern).min(1).max(50),
    when: Cel.optional(),
    /** Runs for one subject execute one at a time, in log order. */
    ordered: z.boolean().default(false),
    propose: ProposeOutput.optional(),
    emit: EmitOutput.optional(),
  })
  .superRefine(oneOutput);

export const InstallStep = z
  .strictObject({
    id: Identifier('a step id'),
    description: z.string().max(500).optional(),
    when: Cel.optional(),
    propose: ProposeOutput.optional(),
    emit: EmitOutput.optional(),
  })
  .superRefine(oneOutput);

export const EntityProjection = z.strictObject({
  /** The entity type, e.g. `stripe.customer`. */
  type: z.string().max(100).regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/, 'an entity type is dotted lowercase segments, e.g. stripe.customer'),
  on: z.array(SignalPattern).min(1).max(50),
  when: Cel.optional(),
  /** Evaluates to the entity's key (a string) for every signal in `on` and `tombstone_on`. */
  key: Cel,
  /** Each field's new value; fields not named keep theirs. */
  fields: CelFields,
  /** Signal types after which the entity is a tombstone. */
  tombstone_on: z.array(SignalPattern).max(50).default([]),
});

/** How an inbound delivery's event is read: CEL over the provider's body and headers. */
export const WebhookEvent = z.strictObject({
  id: Cel,
  /** Evaluates to the signal type to record, one the package declares. */
  type: Cel,
  /** Unix seconds (int), an RFC 3339 string or a timestamp; absent = when received. */
  occurred_at: Cel.optional(),
  subject: Cel.optional(),
  /** The signal's payload; absent = the whole body. */
  payload: Cel.optional(),
});

const webhookCommon = {
  /** Deliveries for which this is false are acknowledged and recorded as nothing. */
  when: Cel.optional(),
  event: WebhookEvent,
};
const tolerance = z.number().int().min(1).max(3600).default(300);

export const WebhookSpec = z.discriminatedUnion('scheme', [
  z.strictObject({ scheme: z.literal('stripe'), secret: SecretName, tolerance_seconds: tolerance, ...webhookCommon }),
  z.strictObject({ scheme: z.literal('standard-webhooks'), secret: SecretName, tolerance_seconds: tolerance, ...webhookCommon }),
  z.strictObject({
    scheme: z.literal('hmac'),
    secret: SecretName,
    /** HMAC-SHA256 of the raw body, read from `header`, after `prefix`, in `encoding`. */
    signature: z.strictObject({
      header: z.string().min(1).max(100).regex(/^[A-Za-z0-9-]+$/, 'an HTTP header name'),
      algorithm: z.literal('sha256').default('sha256'),
      encoding: z.enum(['hex', 'base64']).default('hex'),
      prefix: z.string().max(40).default(''),
    }),
    ...webhookCommon,
  }),
  z.strictObject({
    scheme: z.literal('google-pubsub'),
    /** The OIDC token's expected audience; absent = the hook's own URL. */
    audience: z.string().min(1).max(2048).optional(),
    /** The expected service account (`email` claim), when set. */
    service_account: z.email().optional(),
    ...webhookCommon,
  }),
]);
export type WebhookSpec = z.infer<typeof WebhookSpec>;

export const Manifest = z.strictObject({
  $schema: z.string().optional(),
  name: PackageName,
  version: PackageVersion,
  description: z.string().min(1).max(1000),
  /** Other packages this one needs installed, by semver range. */
  requires: z.record(PackageName, z.string().min(1).max(200)).default({}),
  /** Whether an org may install this package more than once. */
  multiple_installations: z.boolean().default(false),
  config: JsonSchemaDocument.default({ type: 'object', additionalProperties: false }),
  secrets: z.array(Secret).max(50).default([]),
  /** The directive kinds the package may propose. */
  scopes: z.array(DirectiveKind).max(100).default([]),
  signals: z.array(SignalDeclaration).max(200).default([]),
  webhook: WebhookSpec.optional(),
  handlers: z.array(HandlerRule).max(200).default([]),
  /** Default policy rules, installed as `<package>.<id>`. */
  policies: z.array(PolicyRule).max(100).default([]),
  projections: z.array(EntityProjection).max(100).default([]),
  steps: z.array(InstallStep).max(50).default([]),
});
export type Manifest = z.infer<typeof Manifest>;
export type HandlerRule = z.infer<typeof HandlerRule>;
export type InstallStep = z.infer<typeof InstallStep>;
export type EntityProjection = z.infer<typeof EntityProjection>;
export type ProposeOutput = z.infer<typeof ProposeOutput>;
export type EmitOutput = z.infer<typeof EmitOutput>;

/** The manifest's JSON Schema, as editors read it (input shape: defaulted fields are optional). */
export function manifestJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(Manifest, { io: 'input', target: 'draft-2020-12' }),
    title: 'signalbus package manifest',
  };
}
