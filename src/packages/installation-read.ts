/**
 * Reading installations: one by id, a page in creation order, the live set
 * (status `installed`: the installations whose handlers, payload schemas,
 * policies and hooks are active), and the org of an installation id for the
 * unauthenticated hook route.
 */
import { notFound } from '../core/errors.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { isoTimestamp } from '../signals/model.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';
import type { InstallationRow, InstallationStatus } from './installation-model.ts';

export type Installation = InstallationRow;

export interface InstallationReadDeps {
  sql: Sql;
}

const SELECT = `
  id, package, version, config, secrets, status, pending, steps, error, backfill_from, created_by,
  ${isoTimestamp('created_at')} as created_at, ${isoTimestamp('updated_at')} as updated_at, last_signal_id`;

const dbOf = (deps: InstallationReadDeps, ctx: VerbContext): Queryable => ctx.tx?.sql ?? deps.sql;

/** The row, or undefined; `lock` takes it FOR UPDATE (inside the caller's transaction). */
export async function findInstallation(db: Queryable, schema: string, id: string, { lock = false } = {}): Promise<Installation | undefined> {
  const [row] = await db<Installation[]>`
    select ${db.unsafe(SELECT)} from ${db(`${schema}.installations`)} where id = ${id} ${lock ? db`for update` : db``}`;
  return row;
}

export async function getInstallation(deps: InstallationReadDeps, { ctx, input }: VerbCall<{ id: string }>): Promise<Installation> {
  const row = await findInstallation(dbOf(deps, ctx), ctx.tenant.schema, input.id);
  if (!row) throw notFound('installation');
  return row;
}

export interface ListInstallationsInput {
  status?: InstallationStatus;
  package?: string;
  after?: string;
  limit: number;
}

export async function listInstallations(
  deps: InstallationReadDeps,
  { ctx, input }: VerbCall<ListInstallationsInput>,
): Promise<{ data: Installation[]; next_cursor: string | null }> {
  const db = dbOf(deps, ctx);
  const { status, package: name, after, limit } = input;
  const rows = await db<Installation[]>`
    select ${db.unsafe(SELECT)} from ${db(`${ctx.tenant.schema}.installations`)}
     where true
       ${status ? db`and status = ${status}` : db``}
       ${name ? db`and package = ${name}` : db``}
       ${after ? db`and id > ${after}` : db``}
     order by id limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}

/** The org's live installations (status `installed`), in creation order. */
export async function listActiveInstallations(deps: InstallationReadDeps, { ctx }: VerbCall<Record<string, never> | undefined>): Promise<Installation[]> {
  const db = dbOf(deps, ctx);
  return db<Installation[]>`
    select ${db.unsafe(SELECT)} from ${db(`${ctx.tenant.schema}.installations`)} where status = 'installed' order by id`;
}

/**
 * The org id of an installation, from its id alone (`public.installation_routes`),
 * for the hook route, which has no API key. Undefined for an id never issued;
 * the installation's status still decides whether its hook answers.
 */
export async function findInstallationOrg(deps: InstallationReadDeps, installationId: string): Promise<string | undefined> {
  const [row] = await deps.sql<{ org_id: string }[]>`
    select org_id from public.installation_routes where installation_id = ${installationId}`;
  return row?.org_id;
}

/**
 * Writes the route of every installation of a tenant whose id has none yet:
 * after an import, so an imported installation's hook finds its org.
 */
export async function recordInstallationRoutes(db: Queryable, tenant: { id: string; schema: string }): Promise<void> {
  await db`
    insert into public.installation_routes (installation_id, org_id)
    select id, ${tenant.id} from ${db(`${tenant.schema}.installations`)}
    on conflict (installation_id) do nothing`;
}
