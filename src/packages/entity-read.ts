/**
 * Reading the entities projection: one entity, or a page in (type, key)
 * order. The position of the entity's last signal is read from the log: the
 * row keeps the signal's id, which an `orgs import` preserves.
 */
import { notFound } from '../core/errors.ts';
import type { Queryable, Sql } from '../db/client.ts';
import type { VerbCall, VerbContext } from '../signals/verb-context.ts';
import { entityId, INSTALLATION_ENTITY } from './entity-projection.ts';

export interface Entity {
  type: string;
  key: string;
  fields: Record<string, unknown>;
  version: number;
  tombstone: boolean;
  updated_position: string;
}

export interface EntityReadDeps {
  sql: Sql;
}

const dbOf = (deps: EntityReadDeps, ctx: VerbContext): Queryable => ctx.tx?.sql ?? deps.sql;

const select = (db: Queryable, schema: string) => db`
  select e.id, e.type, e.key, e.fields, e.version, e.tombstone,
         lpad(to_hex((s.tx_id::text)::bigint), 16, '0') || lpad(to_hex(s.seq), 16, '0') as updated_position
    from ${db(`${schema}.entities`)} e
    join ${db(`${schema}.signals`)} s on s.id = e.last_signal_id`;

const withoutId = ({ id: _id, ...entity }: Entity & { id: string }): Entity => entity;

export async function getEntity(deps: EntityReadDeps, { ctx, input }: VerbCall<{ type: string; key: string }>): Promise<Entity> {
  const db = dbOf(deps, ctx);
  if (input.type === INSTALLATION_ENTITY) throw notFound('entity');
  const [row] = await db<(Entity & { id: string })[]>`${select(db, ctx.tenant.schema)} where e.id = ${entityId(input.type, input.key)}`;
  if (!row) throw notFound('entity');
  return withoutId(row);
}

export interface ListEntitiesInput {
  type?: string;
  after?: string;
  limit: number;
}

export async function listEntities(deps: EntityReadDeps, { ctx, input }: VerbCall<ListEntitiesInput>): Promise<{ data: Entity[]; next_cursor: string | null }> {
  const db = dbOf(deps, ctx);
  const { type, after, limit } = input;
  const rows = await db<(Entity & { id: string })[]>`
    ${select(db, ctx.tenant.schema)}
     where e.type <> ${INSTALLATION_ENTITY}
       ${type ? db`and e.type = ${type}` : db``}
       ${after ? db`and e.id > ${after}` : db``}
     order by e.id limit ${limit + 1}`;
  const data = rows.slice(0, limit);
  return { data: data.map(withoutId), next_cursor: rows.length > limit ? data[data.length - 1]!.id : null };
}
