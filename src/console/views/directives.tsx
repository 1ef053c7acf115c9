/**
 * Directives: the approvals inbox (oldest first, with the decision that held
 * each one, its params and the time left) with approve and reject, and the
 * full list by status and kind.
 */
import type { Hono } from 'hono';
import { DomainError, notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { DIRECTIVE_STATUSES, type DirectiveStatus } from '../../directives/model.ts';
import { showDirectives, type Directive } from '../../directives/store.ts';
import { decideDirective } from '../../directives/transitions.ts';
import { formOf, may, need, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { DataTable, Json, NextPage, Page, Time } from '../layout.tsx';
import { noticeText, withNotice } from '../notices.ts';
import { decisionText } from './signals.tsx';
import { Countdown, DecideForm, isExpired } from './directive.tsx';
import type { ConsoleSession } from '../../auth/sessions.ts';

const PAGE_SIZE = 50;

function statusFilter(value: string | undefined): DirectiveStatus | undefined {
  if (!value) return undefined;
  if (!(DIRECTIVE_STATUSES as readonly string[]).includes(value)) throw new DomainError('validation_failed', 'unknown status', [{ path: 'status', message: 'unknown status' }]);
  return value as DirectiveStatus;
}

function ApprovalCard({ org, directive, session, operate }: { org: string; directive: Directive; session: ConsoleSession; operate: boolean }) {
  const expired = isExpired(directive);
  return (
    <article class="card" aria-labelledby={`title-${directive.id}`}>
      <h2 id={`title-${directive.id}`}><a href={`/console/orgs/${org}/directives/${directive.id}`}>{directive.kind}</a> <code>{directive.id}</code></h2>
      <p>
        Proposed <Time value={directive.proposed_at} /> by {directive.actor.id} · <Countdown expiresAt={directive.expires_at} />
      </p>
      <p>Held by: {decisionText(directive.decision)} · estimated cost ${directive.estimated_cost_usd.toFixed(4)}</p>
      <details open>
        <summary>Params</summary>
        <Json value={directive.params} />
      </details>
      {expired ? <p class="expired-note"><span class="status expired">Expired</span>: the approval window has closed; it can no longer be approved.</p> : null}
      {operate && !expired ? <DecideForm org={org} directive={directive} session={session} back="approvals" /> : null}
    </article>
  );
}

export function registerDirectives(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/approvals', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const after = c.req.query('after');
    const page = await showDirectives(c.get('deps').bus.directives, {
      ctx: verbContextOf(c),
      input: { status: 'awaiting_approval', limit: PAGE_SIZE, ...(after ? { after } : {}) },
    });
    const operate = may(c, 'org:operate');
    return c.html(
      <Page title="Approvals" session={session} org={org} current="approvals" notice={noticeText(c.req.query('notice'))}>
        {page.data.length === 0 ? <p>Nothing is awaiting approval.</p> : null}
        {page.data.map((directive) => <ApprovalCard org={org} directive={directive} session={session} operate={operate} />)}
        <NextPage base={`/console/orgs/${org}/approvals`} query={{}} cursor={page.next_cursor} />
      </Page>,
    );
  });

  app.post('/orgs/:org/directives/:id/decide', async (c) => {
    need(c, 'org:operate');
    const id = c.req.param('id');
    if (!isId('directive', id)) throw notFound('directive');
    const form = formOf(c);
    const action = form.action === 'approve' ? 'approve' : form.action === 'reject' ? 'reject' : undefined;
    if (!action) throw new DomainError('validation_failed', 'choose approve or reject');
    const reason = form.reason?.trim() ? form.reason.trim().slice(0, 1000) : null;
    await decideDirective(c.get('deps').bus.directives, { ctx: verbContextOf(c), input: { id, action, reason } });
    const org = tenantOf(c).slug;
    const back = form.back === 'directive' ? `/console/orgs/${org}/directives/${id}` : `/console/orgs/${org}/approvals`;
    return c.redirect(withNotice(back, action === 'approve' ? 'approved' : 'rejected'), 303);
  });

  app.get('/orgs/:org/directives', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const query = { status: c.req.query('status'), kind: c.req.query('kind') };
    const status = statusFilter(query.status);
    const after = c.req.query('after');
    const page = await showDirectives(c.get('deps').bus.directives, {
      ctx: verbContextOf(c),
      input: { limit: PAGE_SIZE, ...(status ? { status } : {}), ...(query.kind ? { kind: query.kind } : {}), ...(after ? { after } : {}) },
    });
    return c.html(
      <Page title="Directives" session={session} org={org} current="directives">
        <form method="get" class="filters" aria-label="Filter directives">
          <label>Status{' '}
            <select name="status">
              <option value="">any</option>
              {DIRECTIVE_STATUSES.map((value) => <option value={value} selected={value === status}>{value}</option>)}
            </select>
          </label>
          <label>Kind <input name="kind" value={query.kind ?? ''} placeholder="gmail.send" /></label>
          <button type="submit">Filter</button>
        </form>
        <DataTable columns={['Proposed', 'Kind', 'Status', 'Decision', 'Attempts', 'Cost (USD)', 'Error', 'Params']}>
          {page.data.map((directive) => (
            <tr>
              <td><Time value={directive.proposed_at} /></td>
              <td><a href={`/console/orgs/${org}/directives/${directive.id}`}>{directive.kind}</a> <code>{directive.id}</code></td>
              <td><span class={`status ${directive.status}`}>{directive.status}</span>{directive.decided_by ? <> by {directive.decided_by.id}</> : null}</td>
              <td>{decisionText(directive.decision)}</td>
              <td>{directive.attempts}</td>
              <td>{(directive.cost_usd ?? directive.estimated_cost_usd).toFixed(4)}</td>
              <td>{directive.error ? `${directive.error.code}: ${directive.error.message}` : ''}</td>
              <td><details><summary>params</summary><Json value={directive.params} /></details></td>
            </tr>
          ))}
        </DataTable>
        {page.data.length === 0 ? <p>No directives match.</p> : null}
        <NextPage base={`/console/orgs/${org}/directives`} query={query} cursor={page.next_cursor} />
      </Page>,
    );
  });
}
