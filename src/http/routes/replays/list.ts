import { createRoute, z } from '@hono/zod-openapi';
import { REPLAY_STATUSES } from '../../../replay/model.ts';
import { showReplays } from '../../../replay/verbs.ts';
import { requireAccess, verbContextOf, type ApiApp } from '../../context.ts';
import { errorResponses, jsonResponse, OrgParams } from '../../schemas.ts';
import { PageQuery } from '../../schemas-directives.ts';
import { ReplaySchema } from '../../schemas-replays.ts';

export const listReplaysRoute = createRoute({
  method: 'get',
  path: '/v1/orgs/{org}/replays',
  operationId: 'listReplays',
  tags: ['Replays'],
  summary: 'List replays, newest first',
  description: 'Role: viewer or above. Filter by `status`; pages by cursor.',
  middleware: [requireAccess('org:read')] as const,
  request: { params: OrgParams, query: PageQuery.extend({ status: z.enum(REPLAY_STATUSES).optional() }) },
  responses: {
    200: jsonResponse(z.object({ data: z.array(ReplaySchema), next_cursor: z.string().nullable() }), 'A page of replays'),
    ...errorResponses(422),
  },
});

export function registerListReplays(app: ApiApp) {
  app.openapi(listReplaysRoute, async (c) => {
    const { status, after, limit } = c.req.valid('query');
    const page = await showReplays(c.get('deps').bus.replays, {
      ctx: verbContextOf(c),
      input: { limit, ...(status ? { status } : {}), ...(after ? { after } : {}) },
    });
    return c.json(page, 200);
  });
}
