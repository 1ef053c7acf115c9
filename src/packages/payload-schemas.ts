/**
 * Payload schemas at emit: while an installation of a package is live, a
 * signal of a type the package declares must match the declared payload
 * schema. Emit asks for every signal, so the answer comes from memory: each
 * org's declared types are loaded once (one query), kept until its
 * installations change (the log notifier says so, across processes) or a
 * TTL passes, and each schema is compiled once per package version — a
 * published manifest never changes.
 */
import type { FieldError } from '../core/errors.ts';
import type { Tenant } from '../core/tenant.ts';
import type { Sql } from '../db/client.ts';
import type { Tx } from '../db/transaction.ts';
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import type { PayloadValidator } from '../signals/emit.ts';
import type { LogNotifier } from '../signals/log-notifier.ts';
import { listActiveInstallations } from './installation-read.ts';
import { compileJsonSchema, schemaErrors } from './json-schema.ts';
import type { PackageRegistry } from './registry.ts';
import type { ValidateFunction } from 'ajv';

interface Declared {
  package: string;
  validate: ValidateFunction;
}

type OrgSchemas = ReadonlyMap<string, readonly Declared[]>;

export interface PayloadSchemas extends PayloadValidator {
  invalidate(orgId: string | null): void;
}

export interface PayloadSchemaDeps {
  sql: Sql;
  packages: PackageRegistry;
  notifier: Pick<LogNotifier, 'subscribeInstallations'>;
  ttlMs?: number;
}

/** `/items/0/id` → `payload.items.0.id`, as the API's other field paths read. */
function payloadPath(pointer: string): string {
  if (pointer === '') return 'payload';
  return `payload${pointer.split('/').map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~')).join('.')}`;
}

export function createPayloadSchemas(deps: PayloadSchemaDeps): PayloadSchemas {
  const ttlMs = deps.ttlMs ?? 60_000;
  const cache = new Map<string, { schemas: OrgSchemas | Promise<OrgSchemas>; expiresAt: number }>();
  /** Per package version and type: compiled once, as published manifests never change. */
  const compiled = new Map<string, ValidateFunction | null>();
  let listening: Promise<unknown> | undefined;

  const validatorOf = (name: string, version: string, type: string, schema: unknown): ValidateFunction | null => {
    const key = `${name}@${version}\u0000${type}`;
    let validate = compiled.get(key);
    if (validate === undefined) {
      const result = compileJsonSchema(schema);
      // The registry check compiled it already; a failure here cannot happen for a served version.
      validate = result.ok ? result.validate : null;
      compiled.set(key, validate);
    }
    return validate;
  };

  const load = async (tenant: Tenant, tx?: Tx): Promise<OrgSchemas> => {
    const ctx = { tenant, actor: PLATFORM_ACTOR, source: 'system', ...(tx ? { tx } : {}) };
    const installations = await listActiveInstallations(deps, { ctx, input: undefined });
    const schemas = new Map<string, Declared[]>();
    for (const installation of installations) {
      const manifest = deps.packages.getVersion(installation.package, installation.version)?.manifest;
      for (const signal of manifest?.signals ?? []) {
        const validate = validatorOf(installation.package, installation.version, signal.type, signal.payload);
        if (!validate) continue;
        const list = schemas.get(signal.type) ?? [];
        if (!list.some((declared) => declared.validate === validate)) list.push({ package: installation.package, validate });
        schemas.set(signal.type, list);
      }
    }
    return schemas;
  };

  const schemasOf = (tenant: Tenant, tx?: Tx): OrgSchemas | Promise<OrgSchemas> => {
    const hit = cache.get(tenant.id);
    if (hit && hit.expiresAt > Date.now()) return hit.schemas;
    // Read in the caller's transaction (see PayloadValidator), and not kept:
    // it may see installation changes that are not committed.
    if (tx) return load(tenant, tx);
    listening ??= deps.notifier.subscribeInstallations((orgId) => invalidate(orgId)).catch(() => {
      listening = undefined;
    });
    const entry = { schemas: load(tenant) as OrgSchemas | Promise<OrgSchemas>, expiresAt: Date.now() + ttlMs };
    if (cache.size >= 100_000) cache.clear();
    cache.set(tenant.id, entry);
    (entry.schemas as Promise<OrgSchemas>).then(
      (schemas) => {
        // Kept as a value once loaded: later emits check without awaiting.
        if (cache.get(tenant.id) === entry) entry.schemas = schemas;
      },
      () => {
        if (cache.get(tenant.id) === entry) cache.delete(tenant.id);
      },
    );
    return entry.schemas;
  };

  const check = (schemas: OrgSchemas, items: ReadonlyArray<{ type: string; payload: unknown }>): FieldError[][] =>
    items.map(({ type, payload }) => {
      const declared = schemas.get(type);
      if (!declared) return [];
      return declared.flatMap(({ validate }) => schemaErrors(validate, payload).map((error) => ({ path: payloadPath(error.path), message: error.message })));
    });

  const invalidate = (orgId: string | null) => {
    if (orgId === null) cache.clear();
    else cache.delete(orgId);
  };

  return {
    validate(tenant, items, tx) {
      const schemas = schemasOf(tenant, tx);
      return schemas instanceof Promise ? schemas.then((loaded) => check(loaded, items)) : check(schemas, items);
    },
    invalidate,
  };
}
