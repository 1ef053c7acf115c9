/**
 * The credentials vault: sealed secrets per org (and, later, per
 * installation). Values go in through `putSecret` and come out only through
 * `readSecret`, which executors call; nothing else returns them, and nothing
 * here logs or emits them. Listings show a name, a fingerprint and at most
 * the last four characters.
 */
import { z } from 'zod';
import { DomainError, notFound } from '../core/errors.ts';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../core/storable-text.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { withTransaction } from '../db/transaction.ts';
import { isoTimestamp } from '../signals/model.ts';
import type { Tenant } from '../core/tenant.ts';
import { fingerprintOf, last4Of, openSecret, rewrapSecret, sealSecret } from './envelope.ts';
import type { MasterKeys } from './keys.ts';

/** `secret.updated` / `secret.deleted`: which credential changed, never its value. */
export interface SecretChanged {
  name: string;
  owner: string;
  fingerprint: string;
  last4: string;
}

/** A provider refused a credential: someone must authorize again before its directives can run. */
export interface SecretReauthorizationRequired {
  name: string;
  owner: string;
  directive_id: string;
  kind: string;
  error: { code: string; message: string };
}

declare module '../signals/system.ts' {
  interface SystemSignalPayloads {
    'secret.updated': SecretChanged;
    'secret.deleted': SecretChanged;
    'secret.reauthorization_required': SecretReauthorizationRequired;
  }
}

export const SECRET_NAME = /^[a-z][a-z0-9_.-]{0,62}$/;
export const SecretName = z.string().regex(SECRET_NAME, 'name must match ^[a-z][a-z0-9_.-]{0,62}$');
export const PutSecretInput = z
  .object({ value: z.string().min(1).max(64 * 1024).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE) })
  .strict();

export interface SecretView {
  name: string;
  fingerprint: string;
  last4: string;
  updated_at: string;
}

export interface VaultDeps {
  sql: Sql;
  /** Undefined when no master key is configured: every vault call is then 503. */
  keys: MasterKeys | undefined;
}

/** The owner of an org's own secrets; installations own theirs by id. */
export const ORG_OWNER = 'org';
const identityOf = (tenant: Tenant, owner: string, name: string) => `${tenant.schema}/${owner}/${name}`;

function keysOf(deps: VaultDeps): MasterKeys {
  if (!deps.keys) throw new DomainError('unavailable', 'the vault has no master key configured (SIGNALBUS_ENCRYPTION_KEYS)');
  return deps.keys;
}

function checkName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new DomainError('validation_failed', 'the secret name is not valid', [{ path: 'name', message: 'must match ^[a-z][a-z0-9_.-]{0,62}$' }]);
  }
}

const VIEW = `name, fingerprint, last4, ${isoTimestamp('updated_at')} as updated_at`;

export async function putSecret(
  deps: VaultDeps,
  { tenant, name, input, owner = ORG_OWNER, db = deps.sql }: { tenant: Tenant; name: string; input: unknown; owner?: string; db?: Queryable },
): Promise<SecretView> {
  checkName(name);
  const parsed = PutSecretInput.safeParse(input);
  if (!parsed.success) {
    throw new DomainError('validation_failed', 'the secret is not valid', parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message })));
  }
  const keys = keysOf(deps);
  const { value } = parsed.data;
  const sealed = sealSecret(keys, identityOf(tenant, owner, name), value);
  const [row] = await db<SecretView[]>`
    insert into ${db(`${tenant.schema}.secrets`)} (owner, name, kid, wrapped_key, ciphertext, fingerprint, last4)
    values (${owner}, ${name}, ${sealed.kid}, ${sealed.wrappedKey}, ${sealed.ciphertext}, ${fingerprintOf(keys, value)}, ${last4Of(value)})
    on conflict (owner, name) do update
      set kid = excluded.kid, wrapped_key = excluded.wrapped_key, ciphertext = excluded.ciphertext,
          fingerprint = excluded.fingerprint, last4 = excluded.last4, updated_at = now()
    returning ${db.unsafe(VIEW)}`;
  return row!;
}

export async function listSecrets(db: Queryable, tenant: Tenant, owner = ORG_OWNER): Promise<SecretView[]> {
  return db<SecretView[]>`
    select ${db.unsafe(VIEW)} from ${db(`${tenant.schema}.secrets`)} where owner = ${owner} order by name`;
}

export async function deleteSecret(db: Queryable, { tenant, name, owner = ORG_OWNER }: { tenant: Tenant; name: string; owner?: string }): Promise<SecretView> {
  checkName(name);
  const [deleted] = await db<SecretView[]>`
    delete from ${db(`${tenant.schema}.secrets`)} where owner = ${owner} and name = ${name} returning ${db.unsafe(VIEW)}`;
  if (!deleted) throw notFound('secret');
  return deleted;
}

/**
 * A secret's value, for an executor: the installation's own secret when it
 * has one of that name, else the org's. Undefined when neither exists.
 */
export async function readSecret(
  deps: VaultDeps,
  { tenant, name, installationId = null }: { tenant: Tenant; name: string; installationId?: string | null },
): Promise<string | undefined> {
  const keys = keysOf(deps);
  const owners = installationId ? [installationId, ORG_OWNER] : [ORG_OWNER];
  const rows = await deps.sql<{ owner: string; kid: string; wrapped_key: Buffer; ciphertext: Buffer }[]>`
    select owner, kid, wrapped_key, ciphertext from ${deps.sql(`${tenant.schema}.secrets`)}
     where name = ${name} and owner = any(${owners}::text[])`;
  const row = owners.map((owner) => rows.find((candidate) => candidate.owner === owner)).find(Boolean);
  if (!row) return undefined;
  return openSecret(keys, identityOf(tenant, row.owner, name), { kid: row.kid, wrappedKey: row.wrapped_key, ciphertext: row.ciphertext });
}

export interface RotationReport {
  orgs: number;
  rewrapped: number;
  current_kid: string;
}

/** Re-wraps every secret of every org under the current master key, one org per transaction. */
export async function rotateEncryption(deps: VaultDeps): Promise<RotationReport> {
  const keys = keysOf(deps);
  const orgs = await deps.sql<Tenant[]>`select id, slug, schema_name as schema from public.organizations order by id`;
  let rewrapped = 0;
  for (const tenant of orgs) {
    await withTransaction(deps.sql, undefined, async ({ sql: tx }) => {
      const rows = await tx<{ owner: string; name: string; kid: string; wrapped_key: Buffer; ciphertext: Buffer }[]>`
        select owner, name, kid, wrapped_key, ciphertext from ${tx(`${tenant.schema}.secrets`)}
         where kid <> ${keys.current.kid} for update`;
      for (const row of rows) {
        const next = rewrapSecret(keys, identityOf(tenant, row.owner, row.name), { kid: row.kid, wrappedKey: row.wrapped_key, ciphertext: row.ciphertext });
        await tx`
          update ${tx(`${tenant.schema}.secrets`)} set kid = ${next.kid}, wrapped_key = ${next.wrappedKey}
           where owner = ${row.owner} and name = ${row.name}`;
        rewrapped++;
      }
    });
  }
  return { orgs: orgs.length, rewrapped, current_kid: keys.current.kid };
}
