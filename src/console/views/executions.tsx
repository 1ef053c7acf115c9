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
import { Csrf, NextPage, Page, Time } from '../layout.tsx';
import { noticeText, withNotice } from '../notices.ts';

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
    const operate = may(c, 'org:operate');
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
        <div class="scroll">
          <table>
            <thead>
              <tr><th scope="col">Started</th><th scope="col">Handler</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Cost (USD)</th><th scope="col">Error</th><th scope="col">Input</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr>
            </thead>
            <tbody>
              {page.data.map((execution) => (
                <tr>
                  <td><Time value={execution.started_at} /></td>
                  <td>{execution.handler} <code>{execution.id}</code></td>
                  <td><span class={`status ${execution.status}`}>{execution.status}</span></td>
                  <td>{execution.attempts}</td>
                  <td>{execution.cost_usd !== null ? execution.cost_usd.toFixed(4) : ''}</td>
                  <td>{execution.error ? `${execution.error.code}: ${execution.error.message}` : ''}</td>
                  <td>
                    {execution.signal_id ? <a href={`/console/orgs/${org}/signals/${execution.signal_id}`}>{execution.signal_id}</a> : execution.directive_id ?? ''}
                  </td>
                  <td>
                    {operate && execution.status === 'failed' && execution.signal_id ? (
                      <form method="post" action={`/console/orgs/${org}/executions/${execution.id}/retry`}>
                        <Csrf session={session} />
                        <button type="submit" aria-label={`Retry ${execution.id}`}>Retry</button>
                      </form>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {page.data.length === 0 ? <p>No executions match.</p> : null}
        <NextPage base={`/console/orgs/${org}/executions`} query={query} cursor={page.next_cursor} />
      </Page>,
    );
  });

  app.post('/orgs/:org/executions/:id/retry', async (c) => {
    need(c, 'org:operate');
    const id = c.req.param('id');
    if (!isId('execution', id)) throw notFound('execution');
    const reason = formOf(c).reason?.trim() || null;
    await retryExecution(c.get('deps').bus, { ctx: verbContextOf(c), input: { id, reason } });
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/executions?status=failed`, 'retried'), 303);
  });
}
