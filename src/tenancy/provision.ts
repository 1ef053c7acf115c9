/**
 * Provisioning an organization: its row, its `org_<slug>` schema with every
 * tenant migration, its migration status and its first signal `org.created` —
 * all in one transaction. Postgres DDL is transactional, so a failure at any
 * step rolls back the schema with the row: no orphan schema, no half-made org.
 * Repeating the call is idempotent; concurrent calls for one slug serialize on
 * the slug's unique index and the loser answers with the winner's org.
 */
import { PLATFORM_ACTOR } from '../signals/actor.ts';
import { DomainError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { isStorableText, UNSTORABLE_TEXT_MESSAGE } from '../core/storable-text.ts';
import { withTransaction, type Tx } from '../db/transaction.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import { findTenant } from './directory.ts';
import { schemaNameFor, Slug, type Organization } from './tenant.ts';
import { createTenantSchema, type TenantMigration } from './tenant-migrations.ts';
import { z } from 'zod';

export const CreateOrgInput = z.object({
  slug: Slug,
  name: z.string().trim().min(1).max(200).refine(isStorableText, UNSTORABLE_TEXT_MESSAGE),
});
export type CreateOrgInput = z.infer<typeof CreateOrgInput>;

export interface ProvisionDeps extends EmitDeps {
  tenantMigrations: TenantMigration[];
}

/** A platform verb: no org's context exists before it; joins `tx` when given. */
export async function provisionOrg(
  deps: ProvisionDeps,
  { input, tx: outer }: { input: CreateOrgInput; tx?: Tx },
): Promise<{ tenant: Organization; created: boolean }> {
  const schema = schemaNameFor(input.slug);
  return withTransaction(deps.sql, outer, async (tx) => {
    const [inserted] = await tx.sql`
      insert into public.organizations (id, slug, name, schema_name)
      values (${newId('org')}, ${input.slug}, ${input.name}, ${schema})
      on conflict do nothing
      returning id`;
    // No target: a racing insert of the same slug can collide on the schema
    // name's unique index first, which `on conflict (slug)` would raise.
    if (!inserted) {
      const existing = await findTenant(tx.sql, 'slug', input.slug);
      if (!existing) throw new DomainError('conflict', `the schema for ${input.slug} belongs to another organization`);
      if (existing.status === 'importing') throw new DomainError('conflict', `an organization with slug ${input.slug} is being imported`);
      if (existing.name !== input.name) {
        throw new DomainError('conflict', `an organization with slug ${input.slug} already exists with another name`);
      }
      return { tenant: existing, created: false };
    }
    const tenant = (await findTenant(tx.sql, 'id', inserted.id as string))!;
    await createTenantSchema(tx.sql, tenant, deps.tenantMigrations);
    await emit(deps, {
      ctx: { tenant, actor: PLATFORM_ACTOR, source: 'system', system: true, tx },
      input: {
        type: 'org.created',
        subject: `org:${tenant.id}`,
        payload: { org_id: tenant.id, slug: tenant.slug, name: tenant.name },
        dedupe_key: 'org.created',
      },
    });
    return { tenant, created: true };
  });
}
