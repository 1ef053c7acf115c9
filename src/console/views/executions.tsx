/**
 * Executions: handler runs and directive runs by status and handler, failed
 * ones with their errors and, for an operator, a retry.
 */
import type { Hono } from 'hono';
import { DomainError, notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { EXECUTION_STATUSES, type ExecutionStatus } from '../../executions/model.ts';
import { showExecutions } from '../../executions/read.ts';
import { retryExecution } from '../../handlers/retry-execution.ts';
import { formOf, may, need, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { NextPage, Page } from '../layout.tsx';
import { noticeText, withNotice } from '../notices.ts';
import { ExecutionTable } from './lifecycle.tsx';

const PAGE_SIZE = 50;

export function registerExecutions(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/executions', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const query = { status: c.req.query('status'), handler: c.req.query('handler') };
    if (query.status && !(EXECUTION_STATUSES as readonly string[]).includes(query.status)) {
      throw new DomainError('validation_failed', 'unknown status', [{ path: 'status', message: 'unknown status' }]);
    }
    const status = query.status as ExecutionStatus | undefined;
    const after = c.req.query('after');
    const page = await showExecutions(c.get('deps').bus.runtime, {
      ctx: verbContextOf(c),
      input: { limit: PAGE_SIZE, ...(status ? { status } : {}), ...(query.handler ? { handler: query.handler } : {}), ...(after ? { after } : {}) },
    });
    return c.html(
      <Page title="Executions" session={session} org={org} current="executions" notice={noticeText(c.req.query('notice'))}>
        <form method="get" class="filters" aria-label="Filter executions">
          <label>Status{' '}
            <select name="status">
              <option value="">any</option>
              {EXECUTION_STATUSES.map((value) => <option value={value} selected={value === status}>{value}</option>)}
            </select>
          </label>
          <label>Handler <input name="handler" value={query.handler ?? ''} placeholder="executor:gmail.send" /></label>
          <button type="submit">Filter</button>
        </form>
        <ExecutionTable org={org} executions={page.data} retry={may(c, 'org:operate') ? session : undefined} />
        <NextPage base={`/console/orgs/${org}/executions`} query={query} cursor={page.next_cursor} />
      </Page>,
    );
  });

  app.post('/orgs/:org/executions/:id/retry', async (c) => {
    need(c, 'org:operate');
    const id = c.req.param('id');
    if (!isId('execution', id)) throw notFound('execution');
    const form = formOf(c);
    const reason = form.reason?.trim() || null;
    await retryExecution(c.get('deps').bus, { ctx: verbContextOf(c), input: { id, reason } });
    const org = tenantOf(c).slug;
    const back = form.back === 'execution' ? `/console/orgs/${org}/executions/${id}` : `/console/orgs/${org}/executions?status=failed`;
    return c.redirect(withNotice(back, 'retried'), 303);
  });
}
