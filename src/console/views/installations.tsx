/**
 * Installations: the org's packages with status and error report, and an
 * installation's page — its webhook URL, steps, config, and for an admin the
 * actions (installation-actions.tsx), the upgrade and secrets forms and the
 * inbound delivery log.
 */
import type { Hono } from 'hono';
import type { ConsoleSession } from '../../auth/sessions.ts';
import { notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import type { Installation } from '../../packages/installation-read.ts';
import { getInstallation, listInstallations } from '../../packages/installation-read.ts';
import { publicBase } from '../../http/context.ts';
import { listInstallationDeliveries } from '../../webhooks/deliveries.ts';
import { may, need, tenantOf, verbContextOf, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Csrf, Json, NextPage, Page, Time } from '../layout.tsx';
import { noticeText } from '../notices.ts';
import { SecretFields } from './config-form.tsx';

const PAGE_SIZE = 50;
const DELIVERY_PAGE_SIZE = 50;

export function installationId(value: string | undefined): string {
  if (!value || !isId('installation', value)) throw notFound('installation');
  return value;
}

/** The buttons an installation in this state can use (the verbs check again). */
function actionsFor(installation: Installation): Array<'retry' | 'disable' | 'enable' | 'uninstall'> {
  if (installation.pending || installation.status === 'uninstalled') return [];
  return [
    ...(installation.error ? (['retry'] as const) : []),
    ...(installation.status === 'installed' ? (['disable'] as const) : []),
    ...(installation.status === 'disabled' ? (['enable'] as const) : []),
    'uninstall' as const,
  ];
}

const label = (action: string) => action[0]!.toUpperCase() + action.slice(1);

async function Deliveries({ c, org, installation }: { c: ConsoleContext; org: string; installation: Installation }) {
  const after = c.req.query('deliveries_after');
  const page = await listInstallationDeliveries(c.get('deps').hooks, {
    ctx: verbContextOf(c),
    input: { installationId: installation.id, limit: DELIVERY_PAGE_SIZE, ...(after ? { after } : {}) },
  });
  return (
    <section aria-labelledby="deliveries">
      <h2 id="deliveries">Inbound deliveries</h2>
      {/* Focusable, so the table can be scrolled sideways from the keyboard on a narrow screen. */}
      <div class="scroll" tabindex={0} role="region" aria-labelledby="deliveries">
        <table>
          <thead>
            <tr><th scope="col">Received</th><th scope="col">Status</th><th scope="col">Outcome</th><th scope="col">Reason</th><th scope="col">Event</th><th scope="col">Signal</th><th scope="col">Body sha256</th></tr>
          </thead>
          <tbody>
            {page.data.map((delivery) => (
              <tr>
                <td><Time value={delivery.received_at} /></td>
                <td>{delivery.status}</td>
                <td><span class={`status ${delivery.outcome}`}>{delivery.outcome}</span></td>
                <td>{[delivery.reason, delivery.detail].filter(Boolean).join(': ')}</td>
                <td>{delivery.event_id ?? ''}</td>
                <td>{delivery.signal_id ? <a href={`/console/orgs/${org}/signals/${delivery.signal_id}`}>{delivery.signal_id}</a> : ''}</td>
                <td><code>{delivery.body_sha256 ?? ''}</code></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {page.data.length === 0 ? <p>No deliveries yet.</p> : null}
      {page.next_cursor ? (
        <p class="pager"><a href={`/console/orgs/${org}/installations/${installation.id}?deliveries_after=${encodeURIComponent(page.next_cursor)}#deliveries`} rel="next">Older deliveries →</a></p>
      ) : null}
    </section>
  );
}

/** An installation's page. */
async function InstallationPage({ c, session, id }: { c: ConsoleContext; session: ConsoleSession; id: string }) {
  const org = tenantOf(c).slug;
  const deps = c.get('deps');
  const installation = await getInstallation(deps.bus.installations, { ctx: verbContextOf(c), input: { id } });
  const manifest = deps.packages.getVersion(installation.package, installation.version)?.manifest;
  const admin = may(c, 'org:admin');
  const base = `/console/orgs/${org}/installations/${installation.id}`;
  const live = installation.status !== 'uninstalled' && !installation.pending;
  const upgrades = (deps.packages.get(installation.package)?.versions ?? []).filter((entry) => !entry.yanked && entry.version !== installation.version);
  const { pending, error } = installation;
  return (
    <Page title={`Installation ${installation.package}`} session={session} org={org} current="installations" notice={noticeText(c.req.query('notice'))}>
      <dl class="facts">
        <dt>Id</dt><dd><code>{installation.id}</code></dd>
        <dt>Package</dt><dd>{installation.package} {installation.version}</dd>
        <dt>Status</dt>
        <dd>
          <span class={`status ${installation.status}`}>{installation.status}</span>
          {/* console.js polls a running job's state and reloads the page when it ends. */}
          {pending ? <span data-installation-poll={`${base}/state`}>{` — ${pending.operation} to ${pending.version} running (attempt ${pending.attempt}); the page reloads when it ends`}</span> : null}
        </dd>
        {manifest?.webhook ? (
          <>
            <dt>Webhook URL</dt>
            <dd>
              <code id="webhook-url">{`${publicBase(c)}/v1/hooks/${installation.id}`}</code>
              <span class="hint"> Give this URL to the sender{'secret' in manifest.webhook ? `; it signs with the ${manifest.webhook.secret} secret (${manifest.webhook.scheme})` : ` (${manifest.webhook.scheme})`}. It answers only while the installation is installed.</span>
            </dd>
          </>
        ) : null}
        <dt>Installed by</dt><dd>{installation.created_by.id} at <Time value={installation.created_at} /></dd>
        <dt>Secrets</dt><dd>{installation.secrets.length > 0 ? installation.secrets.join(', ') : 'none'}</dd>
      </dl>
      {error ? (
        <section class="error" role="alert" aria-labelledby="install-error">
          <h2 id="install-error">Error report</h2>
          <p>
            {`The ${error.operation} to ${error.version} (attempt ${error.attempt}) failed at step `}<strong>{error.step}</strong>{`: ${error.code} — ${error.message}`}
          </p>
          <Json value={error} />
        </section>
      ) : null}
      <h2>Steps</h2>
      <ul>{installation.steps.map((step) => <li><span class={`status ${step.status}`}>{step.status}</span> {step.id}{step.detail ? `: ${step.detail}` : ''}</li>)}</ul>
      <h2>Config</h2>
      <Json value={installation.config} />
      {admin ? (
        <>
          <h2>Actions</h2>
          <div class="actions">
            {live ? <a class="button" href={`${base}/configure`}>Reconfigure</a> : null}
            {actionsFor(installation).map((action) => (
              <form method="post" action={`${base}/${action}`}>
                <Csrf session={session} />
                <button type="submit" class={action === 'uninstall' ? 'danger' : undefined}>{label(action)}</button>
              </form>
            ))}
          </div>
          {live && (installation.status === 'installed' || installation.status === 'disabled') ? (
            <section aria-labelledby="upgrade">
              <h2 id="upgrade">Upgrade</h2>
              {upgrades.length > 0 ? (
                <form method="post" action={`${base}/upgrade`} class="decide">
                  <Csrf session={session} />
                  <label for="upgrade-version">Version</label>
                  <select id="upgrade-version" name="version">
                    {upgrades.map((entry) => <option value={entry.version}>{entry.version}</option>)}
                  </select>
                  <button type="submit">Upgrade</button>
                </form>
              ) : (
                <p>No other version of {installation.package} is in the registry.</p>
              )}
            </section>
          ) : null}
          {live && manifest && manifest.secrets.length > 0 ? (
            <section aria-labelledby="secrets">
              <h2 id="secrets">Set or rotate secrets</h2>
              <p class="hint">
                Values are stored encrypted and never shown again; a field left empty keeps its secret. To rotate a
                webhook signing secret without refusing deliveries, enter the new and the old value separated by a space,
                then the new one alone once the sender has switched.
              </p>
              <form method="post" action={`${base}/secrets`} class="stack narrow">
                <Csrf session={session} />
                <SecretFields manifest={manifest} />
                <button type="submit">Store secrets</button>
              </form>
            </section>
          ) : null}
          {await Deliveries({ c, org, installation })}
        </>
      ) : null}
    </Page>
  );
}

export function registerInstallations(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/installations', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const after = c.req.query('after');
    const page = await listInstallations(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { limit: PAGE_SIZE, ...(after ? { after } : {}) } });
    return c.html(
      <Page title="Installations" session={session} org={org} current="installations">
        <div class="scroll" tabindex={0} role="region" aria-label="Installed packages">
          <table>
            <thead>
              <tr><th scope="col">Package</th><th scope="col">Version</th><th scope="col">Status</th><th scope="col">Error</th><th scope="col">Installed</th></tr>
            </thead>
            <tbody>
              {page.data.map((installation) => (
                <tr>
                  <td><a href={`/console/orgs/${org}/installations/${installation.id}`}>{installation.package}</a> <code>{installation.id}</code></td>
                  <td>{installation.version}</td>
                  <td><span class={`status ${installation.status}`}>{installation.status}</span></td>
                  <td>{installation.error ? `${installation.error.code} at ${installation.error.step}` : ''}</td>
                  <td><Time value={installation.created_at} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {page.data.length === 0 ? <p>No packages installed.</p> : null}
        <NextPage base={`/console/orgs/${org}/installations`} query={{}} cursor={page.next_cursor} />
        {may(c, 'org:admin') ? (
          <section aria-labelledby="registry">
            <h2 id="registry">Packages in the registry</h2>
            <ul>
              {c.get('deps').packages.list().filter((entry) => entry.latest).map((entry) => {
                const href = (version: string) => `/console/orgs/${org}/installations/new?package=${encodeURIComponent(entry.name)}&version=${encodeURIComponent(version)}`;
                const others = entry.versions.filter((version) => !version.yanked && version.version !== entry.latest).reverse();
                return (
                  <li>
                    <a href={href(entry.latest!)}>{`Install ${entry.name} ${entry.latest}`}</a> — {entry.description}
                    {others.length > 0 ? (
                      <span class="hint">
                        {' Other versions: '}
                        {others.map((version, index) => <>{index > 0 ? ', ' : ''}<a href={href(version.version)} aria-label={`Install ${entry.name} ${version.version}`}>{version.version}</a></>)}
                      </span>
                    ) : null}
                  </li>
                );
              })}
            </ul>
          </section>
        ) : null}
      </Page>,
    );
  });

  // What the page polls while a job runs.
  app.get('/orgs/:org/installations/:id/state', async (c) => {
    need(c, 'org:read');
    const installation = await getInstallation(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { id: installationId(c.req.param('id')) } });
    return c.json({ status: installation.status, version: installation.version, pending: installation.pending !== null });
  });

  app.get('/orgs/:org/installations/:id', async (c) => {
    const session = need(c, 'org:read');
    return c.html(await InstallationPage({ c, session, id: installationId(c.req.param('id')) }));
  });
}
