import { createRoute, z } from '@hono/zod-openapi';
import { MAX_ENTITY_KEY } from '../../../packages/entity-projection.ts';
import { getEntity, listEntities } from '../../../packages/entity-read.ts';
import { AsOfQuery, readAsOf } from '../../as-of.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';

const EntityType = z.string().max(100).regex(/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/).describe('An entity type, e.g. `stripe.customer`');

const EntityKey = z.string().min(1).max(MAX_ENTITY_KEY);

const EntitySchema = z
  .object({
    type: z.string(),
    key: z.string(),
    fields: z.record(z.string(), z.unknown()),
    version: z.number().int().describe('How many signals have changed it'),
    tombstone: z.boolean().describe('True after a signal in its rule’s `tombstone_on`; `fields` keep their last values'),
    updated_position: z.string().describe('Log position of the last signal that changed it'),
  })
  .openapi('Entity');

export const listEntitiesRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/entities',
  operationId: 'listEntities',
  tags: ['Installations'],
  summary: 'Entities projected by installed packages, in (type, key) order',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized them. Filter by `type`; pages by cursor.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: {
    params: OrgParams,
    query: z.object({
      type: EntityType.optional(),
      after: z.string().max(100 + 1 + MAX_ENTITY_KEY).optional().describe('`next_cursor` of the previous page'),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
    }).extend(AsOfQuery.shape),
  },
  responses: {
    200: jsonResponse(z.object({ data: z.array(EntitySchema), next_cursor: z.string().nullable() }), 'A page of entities'),
    ...errorResponses(422),
  },
});

export const getEntityRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/entities/{type}/{key}',
  operationId: 'getEntity',
  tags: ['Installations'],
  summary: 'One entity projected by an installed package',
  description: 'Role: viewer or above. With `as_of=<replay id>`, as that as-of replay materialized it. A tombstone is returned with `tombstone: true`.',
  middleware: [requireAccess('org:read'), readAsOf] as const,
  request: { params: OrgParams.extend({ type: EntityType, key: EntityKey }), query: AsOfQuery },
  responses: { 200: jsonResponse(EntitySchema, 'The entity'), ...errorResponses(422) },
});

export function registerEntities(app: ApiApp) {
  app.openapi(listEntitiesRoute, async (c) => {
    const { type, after, limit } = c.req.valid('query');
    const page = await listEntities(c.get('deps').bus.installations, {
      ctx: verbContextOf(c),
      input: { limit, ...(type ? { type } : {}), ...(after ? { after } : {}) },
    });
    return c.json(page, 200);
  });
  app.openapi(getEntityRoute, async (c) => {
    const { type, key } = c.req.valid('param');
    return c.json(await getEntity(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { type, key } }), 200);
  });
}
