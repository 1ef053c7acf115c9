/**
 * API keys: `sbk_` + 40 random characters, shown once and stored only as a
 * sha256 hash. A secret has 238 bits of entropy, so a fast hash is enough —
 * there is nothing to brute-force that a slow hash would protect.
 * Creating or revoking an org's key is recorded in that org's log
 * (`org.api_key.created` / `.revoked`) in the same transaction.
 */
import { customAlphabet } from 'nanoid';
import { z } from 'zod';
import { sha256Hex } from '../core/canonical-json.ts';
import { DomainError, notFound } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../core/storable-text.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import type { Tenant } from '../core/tenant.ts';
import { Actor } from '../signals/actor.ts';
import type { VerbCall } from '../signals/verb-context.ts';
import { isPlatformRole, OrgRole, type Role } from './roles.ts';

const secretBody = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 40);
export const KEY_PREFIX = 'sbk_';

export function hashSecret(secret: string): string {
  return sha256Hex(secret);
}

export const CreateApiKeyInput = z.object({
  name: z.string().trim().min(1).max(100).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE),
  role: OrgRole,
  actor: Actor.optional(),
});
export type CreateApiKeyInput = z.infer<typeof CreateApiKeyInput>;

export interface ApiKeyView {
  id: string;
  org_id: string | null;
  name: string;
  role: Role;
  actor: Actor;
  created_at: string;
}

interface ApiKeyRow {
  id: string;
  org_id: string | null;
  name: string;
  role: Role;
  actor: Actor;
  created_at: Date;
}

function toView(row: ApiKeyRow): ApiKeyView {
  return { ...row, created_at: row.created_at.toISOString() };
}

/** The recorded actor of a key created without one. */
function defaultActor(name: string): Actor {
  return { type: 'agent', id: `api-key:${name}` };
}

/**
 * Creates a key. `tenant` null makes a platform key (support, platform_admin),
 * which no org's context names; `by` is who asked, recorded on the org's
 * `org.api_key.created` signal. Joins `tx` when given.
 */
export async function createApiKey(
  deps: EmitDeps,
  { tenant, input, by, tx: outer }: { tenant: Tenant | null; input: { name: string; role: Role; actor?: Actor }; by: Actor; tx?: Tx },
): Promise<{ apiKey: ApiKeyView; secret: string }> {
  if ((tenant === null) !== isPlatformRole(input.role)) {
    throw new DomainError('validation_failed', tenant ? 'an org key needs an org role' : 'a platform key needs a platform role', [
      { path: 'role', message: `role ${input.role} does not fit this key` },
    ]);
  }
  const secret = `${KEY_PREFIX}${secretBody()}`;
  const actor = input.actor ?? defaultActor(input.name);
  return withTransaction(deps.sql, outer, async (tx) => {
    const [row] = await tx.sql<ApiKeyRow[]>`
      insert into public.api_keys (id, org_id, name, role, actor, secret_hash, secret_prefix)
      values (${newId('apiKey')}, ${tenant?.id ?? null}, ${input.name}, ${input.role}, ${tx.sql.json(actor)},
              ${hashSecret(secret)}, ${secret.slice(0, 8)})
      returning id, org_id, name, role, actor, created_at`;
    if (tenant) {
      await emit(deps, {
        ctx: { tenant, actor: by, source: 'system', system: true, tx },
        input: {
          type: 'org.api_key.created',
          subject: `api_key:${row!.id}`,
          payload: { api_key_id: row!.id, name: input.name, role: input.role, actor },
          dedupe_key: `org.api_key.created:${row!.id}`,
        },
      });
    }
    return { apiKey: toView(row!), secret };
  });
}

/** Revokes an org's key; another org's key is reported as not found. */
export async function revokeApiKey(deps: EmitDeps, { ctx, input: { id } }: VerbCall<{ id: string }>): Promise<ApiKeyView> {
  const { tenant, actor: by } = ctx;
  return withTransaction(deps.sql, ctx.tx, async (tx) => {
    const [row] = await tx.sql<ApiKeyRow[]>`
      update public.api_keys set revoked_at = now()
       where id = ${id} and org_id = ${tenant.id} and revoked_at is null
      returning id, org_id, name, role, actor, created_at`;
    if (!row) throw notFound('api key');
    await emit(deps, {
      ctx: { tenant, actor: by, source: 'system', system: true, tx },
      input: {
        type: 'org.api_key.revoked',
        subject: `api_key:${row.id}`,
        payload: { api_key_id: row.id },
        dedupe_key: `org.api_key.revoked:${row.id}`,
      },
    });
    return toView(row);
  });
}
