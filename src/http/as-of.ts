/**
 * `?as_of=<replay id>` on the GET routes of projections: the request reads a
 * finished as-of replay's materialized state instead of live state, through
 * the same verbs — its verb context carries the org with the as-of schema.
 */
import { z } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { DomainError } from '../core/errors.ts';
import { isId } from '../core/ids.ts';
import { asOfTenant } from '../replay/as-of.ts';
import { verbContextOf, type ApiEnv } from './context.ts';

export const AsOfQuery = z.object({
  as_of: z.string().max(64).optional().describe('An `as_of` replay id (`rpl_…`): read the state it materialized, not live state'),
});

/** After `requireAccess`: swaps the request's tenant for the as-of one when `as_of` is given. */
export const readAsOf: MiddlewareHandler<ApiEnv> = async (c, next) => {
  const id = c.req.query('as_of');
  if (id !== undefined) {
    if (!isId('replay', id)) {
      throw new DomainError('validation_failed', 'as_of must be an as-of replay id (rpl_…)', [{ path: 'query.as_of', message: 'not a replay id' }]);
    }
    const ctx = verbContextOf(c);
    const tenant = await asOfTenant(c.get('deps').bus.replays, { ctx, input: { id } });
    c.set('verbContext', { ...ctx, tenant });
  }
  await next();
};
