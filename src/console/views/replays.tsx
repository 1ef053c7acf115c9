/**
 * Replays: start one (mode, selection, reason, dry run), follow it on a live
 * progress bar, read its report. The role is checked by the replay verb,
 * which records every attempt — a refused one included — as a signal.
 */
import type { Hono } from 'hono';
import { notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { REPLAY_MODES, type ReplayStatus } from '../../replay/model.ts';
import { requestReplay, showReplay, showReplays } from '../../replay/verbs.ts';
import type { Replay } from '../../replay/store.ts';
import { formOf, may, need, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { Csrf, DataTable, Json, NextPage, Page, Time } from '../layout.tsx';

const PAGE_SIZE = 50;
const ACTIVE: readonly ReplayStatus[] = ['queued', 'running'];

function list(value: string | undefined): string[] | undefined {
  const items = (value ?? '').split(',').map((item) => item.trim()).filter(Boolean);
  return items.length > 0 ? items : undefined;
}

/** A `datetime-local` value read as UTC, as the API's ISO time. */
function isoTime(value: string | undefined): string | undefined {
  if (!value) return undefined;
  return /[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value.length === 16 ? `${value}:00` : value}Z`;
}

function percent(replay: Pick<Replay, 'processed' | 'total' | 'status'>): number {
  if (replay.status === 'succeeded') return 100;
  if (!replay.total) return 0;
  return Math.min(100, Math.floor((replay.processed / replay.total) * 100));
}

function Progress({ org, replay }: { org: string; replay: Replay }) {
  const active = ACTIVE.includes(replay.status);
  return (
    <span class="progress">
      <progress
        max={100}
        value={percent(replay)}
        aria-label={`Progress of ${replay.id}`}
        data-poll={active ? `/console/orgs/${org}/replays/${replay.id}/progress` : undefined}
      >
        {`${percent(replay)} %`}
      </progress>{' '}
      <span class="progress-text">{`${percent(replay)} % · ${replay.processed}${replay.total !== null ? ` of ${replay.total}` : ''}`}</span>
    </span>
  );
}

export function registerReplays(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/replays', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const after = c.req.query('after');
    const page = await showReplays(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { limit: PAGE_SIZE, ...(after ? { after } : {}) } });
    return c.html(
      <Page title="Replays" session={session} org={org} current="replays">
        <DataTable columns={['Requested', 'Replay', 'Status', 'Progress', 'Reason', 'By']}>
          {page.data.map((replay) => (
            <tr>
              <td><Time value={replay.requested_at} /></td>
              <td><a href={`/console/orgs/${org}/replays/${replay.id}`}>{replay.mode}{replay.request.dry_run ? ' (dry run)' : ''}</a> <code>{replay.id}</code></td>
              <td><span class={`status ${replay.status}`}>{replay.status}</span></td>
              <td><Progress org={org} replay={replay} /></td>
              <td>{replay.reason}</td>
              <td>{replay.actor.id}</td>
            </tr>
          ))}
        </DataTable>
        {page.data.length === 0 ? <p>No replays yet.</p> : null}
        <NextPage base={`/console/orgs/${org}/replays`} query={{}} cursor={page.next_cursor} />
        {may(c, 'org:replay') ? (
          <section aria-labelledby="start-replay">
            <h2 id="start-replay">Start a replay</h2>
            <form method="post" action={`/console/orgs/${org}/replays`} class="stack narrow">
              <Csrf session={session} />
              <label for="replay-mode">Mode</label>
              <select id="replay-mode" name="mode">{REPLAY_MODES.map((mode) => <option value={mode}>{mode}</option>)}</select>
              <label for="replay-reason">Reason (incident or ticket)</label>
              <input id="replay-reason" name="reason" required minlength={3} maxlength={1000} placeholder="INC-123: …" />
              <label for="replay-types">Signal types (comma-separated, prefix.* allowed)</label>
              <input id="replay-types" name="types" />
              <label for="replay-subject">Subject</label>
              <input id="replay-subject" name="subject" />
              <label for="replay-since">Since (UTC)</label>
              <input id="replay-since" name="since" type="datetime-local" step="1" />
              <label for="replay-before">Before (UTC)</label>
              <input id="replay-before" name="before" type="datetime-local" step="1" />
              <label for="replay-handlers">Handlers (redeliver; comma-separated)</label>
              <input id="replay-handlers" name="handlers" />
              <label for="replay-projections">Projections (rebuild; comma-separated, blank for all)</label>
              <input id="replay-projections" name="projections" />
              <label for="replay-new">New directives (redeliver)</label>
              <select id="replay-new" name="new_directives"><option value="hold">hold for approval</option><option value="execute">execute (admin)</option></select>
              <label class="check"><input type="checkbox" name="dry_run" value="1" /> Dry run (report what would happen, change nothing)</label>
              <button type="submit">Start replay</button>
            </form>
          </section>
        ) : null}
      </Page>,
    );
  });

  app.post('/orgs/:org/replays', async (c) => {
    const session = need(c, 'org:read');
    const form = formOf(c);
    const selection = {
      ...(list(form.types) ? { types: list(form.types) } : {}),
      ...(form.subject ? { subject: form.subject } : {}),
      ...(isoTime(form.since) ? { since: isoTime(form.since) } : {}),
      ...(isoTime(form.before) ? { before: isoTime(form.before) } : {}),
    };
    const request = {
      mode: form.mode,
      reason: form.reason,
      selection,
      dry_run: form.dry_run === '1',
      ...(form.mode === 'redeliver' ? { new_directives: form.new_directives === 'execute' ? 'execute' : 'hold' } : {}),
      ...(list(form.handlers) ? { handlers: list(form.handlers) } : {}),
      ...(list(form.projections) ? { projections: list(form.projections) } : {}),
    };
    const replay = await requestReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { role: session.principal.role, request } });
    return c.redirect(`/console/orgs/${tenantOf(c).slug}/replays/${replay.id}`, 303);
  });

  app.get('/orgs/:org/replays/:id', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const id = c.req.param('id');
    if (!isId('replay', id)) throw notFound('replay');
    const replay = await showReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { id } });
    return c.html(
      <Page title={`Replay ${replay.mode}`} session={session} org={org} current="replays">
        <dl class="facts">
          <dt>Id</dt><dd><code>{replay.id}</code></dd>
          <dt>Status</dt><dd><span class={`status ${replay.status}`}>{replay.status}</span></dd>
          <dt>Progress</dt><dd><Progress org={org} replay={replay} /></dd>
          <dt>Rate</dt><dd>{replay.rate_per_s !== null ? `${replay.rate_per_s.toFixed(1)} signals/s` : '—'}{replay.eta_s !== null ? ` · about ${Math.ceil(replay.eta_s)} s left` : ''}</dd>
          <dt>Reason</dt><dd>{replay.reason}</dd>
          <dt>Requested by</dt><dd>{replay.actor.id} at <Time value={replay.requested_at} /></dd>
          <dt>Finished</dt><dd><Time value={replay.finished_at} /></dd>
        </dl>
        {replay.error ? <p class="error" role="alert">{`${replay.error.code}: ${replay.error.message}`}</p> : null}
        <h2>Request</h2>
        <Json value={replay.request} />
        <h2>Report</h2>
        {replay.report ? <Json value={replay.report} /> : <p>No report yet.</p>}
      </Page>,
    );
  });

  // What the progress bar polls while a replay is queued or running.
  app.get('/orgs/:org/replays/:id/progress', async (c) => {
    need(c, 'org:read');
    const id = c.req.param('id');
    if (!isId('replay', id)) throw notFound('replay');
    const replay = await showReplay(c.get('deps').bus.replays, { ctx: verbContextOf(c), input: { id } });
    return c.json({ status: replay.status, processed: replay.processed, total: replay.total, percent: percent(replay) });
  });
}
