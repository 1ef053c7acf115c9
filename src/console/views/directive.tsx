/**
 * One directive: kind, params, the decision and the rule that made it, who
 * approved or rejected it and why, its expiry, its status history (its
 * `directive.*` signals) and its executions; approve or reject while it
 * waits. Also the pieces the approvals inbox shares: the countdown and the
 * decide form, which an expired directive no longer gets.
 */
import type { Hono } from 'hono';
import type { ConsoleSession } from '../../auth/sessions.ts';
import { notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { showDirectiveHistory, type Directive } from '../../directives/store.ts';
import { showExecutions } from '../../executions/read.ts';
import { may, need, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { Csrf, Json, Page, Time } from '../layout.tsx';
import { noticeText } from '../notices.ts';
import { ExecutionTable, History } from './lifecycle.tsx';

/** Past its approval window: the server refuses a decision, so none is offered. */
export function isExpired(directive: Pick<Directive, 'status' | 'expires_at'>, now = Date.now()): boolean {
  return directive.status === 'expired' || (directive.status === 'awaiting_approval' && directive.expires_at !== null && Date.parse(directive.expires_at) <= now);
}

/** Time left to approve, as text the served script keeps counting down (`data-expires`). */
export function Countdown({ expiresAt }: { expiresAt: string | null }) {
  if (!expiresAt) return <span>no expiry</span>;
  const left = Date.parse(expiresAt) - Date.now();
  if (left <= 0) return <time class="countdown expired" datetime={expiresAt}>expired</time>;
  return (
    <time class="countdown" datetime={expiresAt} data-expires={expiresAt}>
      {`expires in ${Math.max(1, Math.round(left / 60_000))} min`}
    </time>
  );
}

/** Approve or reject with a reason; `back` says which page the answer returns to. */
export function DecideForm({ org, directive, session, back }: { org: string; directive: Directive; session: ConsoleSession; back: 'approvals' | 'directive' }) {
  const reasonId = `reason-${directive.id}`;
  return (
    <form method="post" action={`/console/orgs/${org}/directives/${directive.id}/decide`} class="decide" data-expiring={directive.expires_at ?? undefined}>
      <Csrf session={session} />
      <input type="hidden" name="back" value={back} />
      <label for={reasonId}>Reason</label>
      <input id={reasonId} name="reason" maxlength={1000} />
      <button type="submit" name="action" value="approve">Approve</button>
      <button type="submit" name="action" value="reject" class="danger">Reject</button>
    </form>
  );
}

export function DecisionFacts({ directive }: { directive: Directive }) {
  const decision = directive.decision;
  return (
    <>
      <dt>Decision</dt>
      <dd>{decision.effect}{decision.reason ? ` — ${decision.reason}` : ''}</dd>
      <dt>Decided by rule</dt>
      <dd>{decision.rule ? <code>{decision.rule}</code> : 'the default (no rule matched)'}</dd>
      {decision.guards.length > 0 ? (
        <>
          <dt>Guards</dt>
          <dd>
            <ul class="plain">
              {decision.guards.map((guard) => <li>{`${guard.guard} #${guard.index} (${guard.match}): ${guard.passed ? 'passed' : 'failed'} — ${guard.detail}`}</li>)}
            </ul>
          </dd>
        </>
      ) : null}
    </>
  );
}

export function registerDirectivePage(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/directives/:id', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const id = c.req.param('id');
    if (!isId('directive', id)) throw notFound('directive');
    const ctx = verbContextOf(c);
    const deps = c.get('deps');
    const { directive, history } = await showDirectiveHistory(deps.bus.directives, { ctx, input: { id } });
    const executions = await showExecutions(deps.bus.runtime, { ctx, input: { directiveId: id, limit: 50 } });
    const expired = isExpired(directive);
    const decidable = directive.status === 'awaiting_approval' && !expired;
    return c.html(
      <Page title={`Directive ${directive.kind}`} session={session} org={org} current="directives" notice={noticeText(c.req.query('notice'))}>
        <dl class="facts">
          <dt>Id</dt><dd><code>{directive.id}</code></dd>
          <dt>Kind</dt><dd>{directive.kind}</dd>
          <dt>Status</dt>
          <dd>
            <span class={`status ${directive.status}`}>{directive.status}</span>
            {directive.status === 'awaiting_approval' && expired ? <> — <span class="status expired">expired</span>, no longer approvable</> : null}
          </dd>
          <DecisionFacts directive={directive} />
          <dt>Approver</dt>
          <dd>{directive.decided_by ? `${directive.decided_by.type}: ${directive.decided_by.id}` : '—'}{directive.decision_reason ? ` — “${directive.decision_reason}”` : ''}</dd>
          <dt>Expiry</dt>
          <dd>{directive.expires_at ? <><Time value={directive.expires_at} />{directive.status === 'awaiting_approval' ? <> · <Countdown expiresAt={directive.expires_at} /></> : null}</> : '—'}</dd>
          <dt>Proposed</dt><dd><Time value={directive.proposed_at} /> by {directive.actor.id}</dd>
          <dt>Caused by</dt><dd>{directive.causation_id && isId('signal', directive.causation_id) ? <a href={`/console/orgs/${org}/signals/${directive.causation_id}`}>{directive.causation_id}</a> : directive.causation_id ?? '—'}</dd>
          <dt>Cost (USD)</dt><dd>{`estimated ${directive.estimated_cost_usd.toFixed(4)}`}{directive.cost_usd !== null ? ` · actual ${directive.cost_usd.toFixed(4)}` : ''}</dd>
          <dt>Attempts</dt><dd>{directive.attempts}</dd>
          {directive.error ? <><dt>Error</dt><dd class="error">{`${directive.error.code}: ${directive.error.message}`}</dd></> : null}
        </dl>
        {decidable && may(c, 'org:operate') ? (
          <section aria-labelledby="decide-heading">
            <h2 id="decide-heading">Decide</h2>
            <DecideForm org={org} directive={directive} session={session} back="directive" />
          </section>
        ) : null}
        <h2>Params</h2>
        <Json value={directive.params} />
        {directive.result !== null && directive.result !== undefined ? <><h2>Result</h2><Json value={directive.result} /></> : null}
        <h2>Status history</h2>
        <History org={org} signals={history} label="Status history" />
        <h2>Executions</h2>
        <ExecutionTable org={org} executions={executions.data} />
      </Page>,
    );
  });
}
