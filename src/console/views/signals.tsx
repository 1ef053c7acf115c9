/**
 * The log: a filtered, cursor-paged list with a live tail over the org's
 * event stream, and one signal's page with its payload and causation trace.
 */
import type { Hono } from 'hono';
import { DomainError, notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { showTrace, type TraceNode } from '../../handlers/trace.ts';
import { signalStreamResponse } from '../../http/sse.ts';
import { decodeCursor, parseTypeFilter, type Signal } from '../../signals/model.ts';
import { showSignal, showSignals } from '../../signals/read.ts';
import { need, sessionOf, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { DataTable, Json, NextPage, Page, Time } from '../layout.tsx';

const PAGE_SIZE = 50;

/** A `datetime-local` value (read as UTC) or an ISO time; blank is no bound. */
function parseTime(value: string | undefined, field: string): Date | undefined {
  if (!value) return undefined;
  const date = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  if (Number.isNaN(date.getTime())) throw new DomainError('validation_failed', `${field} is not a time`, [{ path: field, message: 'not a time' }]);
  return date;
}

function SignalRows({ org, signals }: { org: string; signals: Signal[] }) {
  return (
    <>
      {signals.map((signal) => (
        <tr>
          <td><Time value={signal.recorded_at} /></td>
          <td><a href={`/console/orgs/${org}/signals/${signal.id}`}>{signal.type}</a></td>
          <td>{signal.subject ?? ''}</td>
          <td>{signal.actor.id}</td>
          <td>{signal.source}</td>
          <td>
            <details>
              <summary>payload</summary>
              <Json value={signal.payload} />
            </details>
          </td>
        </tr>
      ))}
    </>
  );
}

export function registerSignals(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/signals', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const query = { type: c.req.query('type'), subject: c.req.query('subject'), correlation_id: c.req.query('correlation_id'), since: c.req.query('since'), before: c.req.query('before') };
    const after = c.req.query('after');
    const types = parseTypeFilter(query.type, 'type');
    const recordedFrom = parseTime(query.since, 'since');
    const recordedBefore = parseTime(query.before, 'before');
    const page = await showSignals(c.get('deps').bus.emit, {
      ctx: verbContextOf(c),
      input: {
        ...(after ? { after: decodeCursor(after) } : {}),
        limit: PAGE_SIZE,
        maxBytes: c.get('deps').maxPageBytes,
        filter: {
          ...(types ? { types } : {}),
          ...(query.subject ? { subject: query.subject } : {}),
          ...(query.correlation_id ? { correlationId: query.correlation_id } : {}),
          ...(recordedFrom ? { recordedFrom } : {}),
          ...(recordedBefore ? { recordedBefore } : {}),
        },
      },
    });
    const tail = new URLSearchParams(query.type ? { types: query.type } : {}).toString();
    return c.html(
      <Page title="Signals" session={session} org={org} current="signals">
        <form method="get" class="filters" aria-label="Filter signals">
          <label>Type <input name="type" value={query.type ?? ''} placeholder="stripe.*, forum.post.created" /></label>
          <label>Subject <input name="subject" value={query.subject ?? ''} /></label>
          <label>Correlation id <input name="correlation_id" value={query.correlation_id ?? ''} /></label>
          <label>Since (UTC) <input name="since" type="datetime-local" step="1" value={query.since ?? ''} /></label>
          <label>Before (UTC) <input name="before" type="datetime-local" step="1" value={query.before ?? ''} /></label>
          <button type="submit">Filter</button>
        </form>
        <section class="tail" aria-labelledby="tail-heading" data-stream={`/console/orgs/${org}/stream${tail ? `?${tail}` : ''}`} data-org={org}>
          <h2 id="tail-heading">Live tail</h2>
          <button type="button" id="tail-toggle" aria-pressed="false">Start live tail</button>
          <span id="tail-state" role="status"></span>
          <ol id="tail-list" aria-live="polite"></ol>
        </section>
        <h2>Log</h2>
        <DataTable columns={['Recorded', 'Type', 'Subject', 'Actor', 'Source', 'Payload']}>
          <SignalRows org={org} signals={page.data} />
        </DataTable>
        {page.data.length === 0 ? <p>No signals match.</p> : null}
        <NextPage base={`/console/orgs/${org}/signals`} query={query} cursor={page.has_more ? page.next_cursor : null} />
      </Page>,
    );
  });

  // The live tail: the API's stream, authenticated by the session instead of a bearer key.
  app.get('/orgs/:org/stream', async (c) => {
    const session = need(c, 'org:read');
    const types = parseTypeFilter(c.req.query('types'));
    const resumeFrom = c.req.header('last-event-id');
    return signalStreamResponse(c, c.get('deps'), {
      tenant: tenantOf(c),
      keyId: session.principal.keyId,
      ...(resumeFrom ? { resumeAfter: decodeCursor(resumeFrom, 'after') } : {}),
      ...(types ? { types } : {}),
    });
  });

  app.get('/orgs/:org/signals/:id', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const id = c.req.param('id');
    if (!isId('signal', id)) throw notFound('signal');
    const deps = c.get('deps');
    const ctx = verbContextOf(c);
    const signal = await showSignal(deps.bus.emit, { ctx, input: { id } });
    const trace = await showTrace(deps.bus.runtime, { ctx, input: { id } });
    return c.html(
      <Page title={`Signal ${signal.type}`} session={sessionOf(c) ?? session} org={org} current="signals">
        <dl class="facts">
          <dt>Id</dt><dd><code>{signal.id}</code></dd>
          <dt>Type</dt><dd>{signal.type}</dd>
          <dt>Subject</dt><dd>{signal.subject ?? '—'}</dd>
          <dt>Actor</dt><dd>{signal.actor.type}: {signal.actor.id}</dd>
          <dt>Source</dt><dd>{signal.source}</dd>
          <dt>Occurred</dt><dd><Time value={signal.occurred_at} /></dd>
          <dt>Recorded</dt><dd><Time value={signal.recorded_at} /></dd>
          <dt>Correlation</dt><dd>{signal.correlation_id ? <a href={`/console/orgs/${org}/signals?correlation_id=${encodeURIComponent(signal.correlation_id)}`}>{signal.correlation_id}</a> : '—'}</dd>
          <dt>Caused by</dt><dd>{signal.causation_id && isId('signal', signal.causation_id) ? <a href={`/console/orgs/${org}/signals/${signal.causation_id}`}>{signal.causation_id}</a> : signal.causation_id ?? '—'}</dd>
          <dt>Dedupe key</dt><dd><code>{signal.dedupe_key}</code></dd>
        </dl>
        <h2>Payload</h2>
        <Json value={signal.payload} />
        <h2>Trace</h2>
        {trace.truncated ? <p class="error">The trace was cut short: it is larger than one page shows.</p> : null}
        <ul class="trace"><TraceTree org={org} node={trace.root} /></ul>
      </Page>,
    );
  });
}

function TraceTree({ org, node }: { org: string; node: TraceNode }) {
  return (
    <li>
      <a href={`/console/orgs/${org}/signals/${node.signal.id}`}>{node.signal.type}</a> <code>{node.signal.id}</code>
      {node.executions.length > 0 ? (
        <ul>
          {node.executions.map((execution) => (
            <li>
              execution <a href={`/console/orgs/${org}/executions/${execution.id}`}><code>{execution.id}</code></a> by {execution.handler}: <span class={`status ${execution.status}`}>{execution.status}</span>
              {execution.error ? <span class="error"> {execution.error.code}: {execution.error.message}</span> : null}
              <ul>
                {execution.directives.map((directive) => (
                  <li>
                    directive <a href={`/console/orgs/${org}/directives/${directive.id}`}><code>{directive.id}</code></a> {directive.kind}: <span class={`status ${directive.status}`}>{directive.status}</span>
                    {' '}— decision {decisionText(directive.decision)}
                    {directive.decided_by ? <> · decided by {directive.decided_by.id}</> : null}
                  </li>
                ))}
                {execution.signals.map((child) => <TraceTree org={org} node={child} />)}
              </ul>
            </li>
          ))}
        </ul>
      ) : null}
    </li>
  );
}

export function decisionText(decision: unknown): string {
  const value = decision as { effect?: string; rule?: string | null; reason?: string } | null;
  if (!value || typeof value !== 'object') return '—';
  return `${value.effect ?? '?'} by ${value.rule ?? 'default'}${value.reason ? ` (${value.reason})` : ''}`;
}
