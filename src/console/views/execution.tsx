/**
 * One execution: what it ran on, each attempt with its outcome, error and
 * timing, tokens and cost, what it derived, its lifecycle signals, and for
 * an operator a retry when a handler run failed.
 */
import type { Hono } from 'hono';
import { notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { showExecutionHistory } from '../../executions/read.ts';
import type { Signal } from '../../signals/model.ts';
import { may, need, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { DataTable, Page, Time } from '../layout.tsx';
import { noticeText } from '../notices.ts';
import { History, InputLink, RetryForm, retryable } from './lifecycle.tsx';

interface Attempt {
  attempt: number;
  started_at: string | null;
  finished_at: string | null;
  duration_ms: number | null;
  outcome: string;
  error: string | null;
  cost_usd: number | null;
}

/** Folds the lifecycle signals into one row per attempt, in attempt order. */
export function attemptsOf(history: Signal[]): Attempt[] {
  const attempts = new Map<number, Attempt>();
  for (const signal of history) {
    const payload = signal.payload as {
      attempt?: number; started_at?: string; finished_at?: string; duration_ms?: number; final?: boolean;
      error?: { code: string; message: string }; usage?: { cost_usd?: number };
    };
    if (typeof payload.attempt !== 'number' || signal.type === 'execution.retry_requested') continue;
    const row = attempts.get(payload.attempt) ?? { attempt: payload.attempt, started_at: null, finished_at: null, duration_ms: null, outcome: 'running', error: null, cost_usd: null };
    row.started_at = payload.started_at ?? row.started_at;
    if (signal.type === 'execution.succeeded') row.outcome = 'succeeded';
    if (signal.type === 'execution.failed') {
      row.outcome = payload.final === false ? 'failed, retried' : 'failed';
      row.error = payload.error ? `${payload.error.code}: ${payload.error.message}` : null;
    }
    if (payload.finished_at) row.finished_at = payload.finished_at;
    if (typeof payload.duration_ms === 'number') row.duration_ms = payload.duration_ms;
    if (typeof payload.usage?.cost_usd === 'number') row.cost_usd = payload.usage.cost_usd;
    attempts.set(payload.attempt, row);
  }
  return [...attempts.values()].sort((a, b) => a.attempt - b.attempt);
}

export function registerExecutionPage(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/executions/:id', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const id = c.req.param('id');
    if (!isId('execution', id)) throw notFound('execution');
    const { execution, history } = await showExecutionHistory(c.get('deps').bus.runtime, { ctx: verbContextOf(c), input: { id } });
    const attempts = attemptsOf(history);
    return c.html(
      <Page title={`Execution ${execution.handler}`} session={session} org={org} current="executions" notice={noticeText(c.req.query('notice'))}>
        <dl class="facts">
          <dt>Id</dt><dd><code>{execution.id}</code></dd>
          <dt>Handler</dt><dd>{execution.handler}</dd>
          <dt>Status</dt><dd><span class={`status ${execution.status}`}>{execution.status}</span></dd>
          <dt>Input</dt><dd><InputLink org={org} execution={execution} /></dd>
          <dt>Attempts</dt><dd>{execution.attempts}</dd>
          <dt>Started</dt><dd><Time value={execution.started_at} /></dd>
          <dt>Finished</dt><dd><Time value={execution.finished_at} />{execution.duration_ms !== null ? ` (${execution.duration_ms} ms)` : ''}</dd>
          <dt>Tokens</dt><dd>{execution.tokens_in !== null || execution.tokens_out !== null ? `${execution.tokens_in ?? 0} in · ${execution.tokens_out ?? 0} out` : '—'}</dd>
          <dt>Cost (USD)</dt><dd>{execution.cost_usd !== null ? execution.cost_usd.toFixed(4) : '—'}</dd>
          {execution.error ? <><dt>Error</dt><dd class="error">{`${execution.error.code}: ${execution.error.message}`}</dd></> : null}
        </dl>
        {retryable(execution) && may(c, 'org:operate') ? (
          <section aria-labelledby="retry-heading">
            <h2 id="retry-heading">Retry</h2>
            <p>Runs the handler again on the same signal, as attempt {execution.attempts + 1}.</p>
            <RetryForm org={org} execution={execution} session={session} back="execution" />
          </section>
        ) : null}
        <h2>Attempts</h2>
        {attempts.length === 0 ? <p>No attempt is recorded yet.</p> : (
          <DataTable columns={['Attempt', 'Started', 'Finished', 'Duration', 'Outcome', 'Error', 'Cost (USD)']} label="Attempts" region="Attempts">
            {attempts.map((attempt) => (
              <tr>
                <td>{attempt.attempt}</td>
                <td><Time value={attempt.started_at} /></td>
                <td><Time value={attempt.finished_at} /></td>
                <td>{attempt.duration_ms !== null ? `${attempt.duration_ms} ms` : ''}</td>
                <td><span class={`status ${attempt.outcome.startsWith('failed') ? 'failed' : attempt.outcome}`}>{attempt.outcome}</span></td>
                <td>{attempt.error ?? ''}</td>
                <td>{attempt.cost_usd !== null ? attempt.cost_usd.toFixed(4) : ''}</td>
              </tr>
            ))}
          </DataTable>
        )}
        <h2>Derived</h2>
        {execution.outputs.signals.length + execution.outputs.directives.length === 0 ? <p>Nothing derived.</p> : (
          <ul>
            {execution.outputs.signals.map((signalId) => <li><a href={`/console/orgs/${org}/signals/${signalId}`}>{`signal ${signalId}`}</a></li>)}
            {execution.outputs.directives.map((directiveId) => <li><a href={`/console/orgs/${org}/directives/${directiveId}`}>{`directive ${directiveId}`}</a></li>)}
          </ul>
        )}
        <h2>Lifecycle signals</h2>
        <History org={org} signals={history} label="Lifecycle signals" />
      </Page>,
    );
  });
}
