/**
 * Installations: the org's packages with status and error report, an
 * installation's steps, config and inbound webhook deliveries, and (admin)
 * retry, disable, enable and uninstall through the installation verbs.
 */
import type { Hono } from 'hono';
import { DomainError, notFound } from '../../core/errors.ts';
import { isId } from '../../core/ids.ts';
import { getInstallation, listInstallations } from '../../packages/installation-read.ts';
import { retryInstallation, setInstallationEnabled, uninstallInstallation } from '../../packages/installations.ts';
import { listInstallationDeliveries } from '../../webhooks/deliveries.ts';
import { formOf, may, need, tenantOf, verbContextOf, type ConsoleEnv } from '../guard.ts';
import { Csrf, Json, NextPage, Page, Time } from '../layout.tsx';
import { noticeText, withNotice } from '../notices.ts';

const PAGE_SIZE = 50;
const ACTIONS = ['retry', 'disable', 'enable', 'uninstall'] as const;

function installationId(value: string | undefined): string {
  if (!value || !isId('installation', value)) throw notFound('installation');
  return value;
}

export function registerInstallations(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/installations', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const after = c.req.query('after');
    const page = await listInstallations(c.get('deps').bus.installations, { ctx: verbContextOf(c), input: { limit: PAGE_SIZE, ...(after ? { after } : {}) } });
    return c.html(
      <Page title="Installations" session={session} org={org} current="installations">
        <div class="scroll">
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
              {c.get('deps').packages.list().filter((entry) => entry.latest).map((entry) => (
                <li>
                  <a href={`/console/orgs/${org}/installations/new?package=${encodeURIComponent(entry.name)}&version=${encodeURIComponent(entry.latest!)}`}>{`Install ${entry.name} ${entry.latest}`}</a> — {entry.description}
                </li>
              ))}
            </ul>
          </section>
        ) : null}
      </Page>,
    );
  });

  app.get('/orgs/:org/installations/:id', async (c) => {
    const session = need(c, 'org:read');
    const org = tenantOf(c).slug;
    const id = installationId(c.req.param('id'));
    const deps = c.get('deps');
    const ctx = verbContextOf(c);
    const installation = await getInstallation(deps.bus.installations, { ctx, input: { id } });
    const admin = may(c, 'org:admin');
    const deliveries = admin ? await listInstallationDeliveries(deps.hooks, { ctx, input: { installationId: id, limit: 50 } }) : null;
    return c.html(
      <Page title={`Installation ${installation.package}`} session={session} org={org} current="installations" notice={noticeText(c.req.query('notice'))}>
        <dl class="facts">
          <dt>Id</dt><dd><code>{installation.id}</code></dd>
          <dt>Package</dt><dd>{installation.package} {installation.version}</dd>
          <dt>Status</dt><dd><span class={`status ${installation.status}`}>{installation.status}</span>{installation.pending ? ` (pending ${JSON.stringify(installation.pending)})` : ''}</dd>
          <dt>Installed by</dt><dd>{installation.created_by.id} at <Time value={installation.created_at} /></dd>
          <dt>Secrets</dt><dd>{installation.secrets.length > 0 ? installation.secrets.join(', ') : 'none'}</dd>
        </dl>
        {installation.error ? (
          <section class="error" role="alert" aria-labelledby="install-error">
            <h2 id="install-error">Error report</h2>
            <Json value={installation.error} />
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
              {ACTIONS.map((action) => (
                <form method="post" action={`/console/orgs/${org}/installations/${installation.id}/${action}`}>
                  <Csrf session={session} />
                  <button type="submit" class={action === 'uninstall' ? 'danger' : undefined}>{action[0]!.toUpperCase() + action.slice(1)}</button>
                </form>
              ))}
            </div>
            <h2>Inbound deliveries</h2>
            <div class="scroll">
              <table>
                <thead>
                  <tr><th scope="col">Received</th><th scope="col">Status</th><th scope="col">Outcome</th><th scope="col">Reason</th><th scope="col">Event</th><th scope="col">Signal</th><th scope="col">Body sha256</th></tr>
                </thead>
                <tbody>
                  {deliveries!.data.map((delivery) => (
                    <tr>
                      <td><Time value={delivery.received_at} /></td>
                      <td>{delivery.status}</td>
                      <td>{delivery.outcome}</td>
                      <td>{[delivery.reason, delivery.detail].filter(Boolean).join(': ')}</td>
                      <td>{delivery.event_id ?? ''}</td>
                      <td>{delivery.signal_id ? <a href={`/console/orgs/${org}/signals/${delivery.signal_id}`}>{delivery.signal_id}</a> : ''}</td>
                      <td><code>{delivery.body_sha256 ?? ''}</code></td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {deliveries!.data.length === 0 ? <p>No deliveries yet.</p> : null}
          </>
        ) : null}
      </Page>,
    );
  });

  app.post('/orgs/:org/installations/:id/:action', async (c) => {
    need(c, 'org:admin');
    const id = installationId(c.req.param('id'));
    const action = c.req.param('action');
    formOf(c);
    const deps = c.get('deps').bus.installations;
    const ctx = verbContextOf(c);
    if (action === 'retry') await retryInstallation(deps, { ctx, input: { id } });
    else if (action === 'disable' || action === 'enable') await setInstallationEnabled(deps, { ctx, input: { id, enabled: action === 'enable' } });
    else if (action === 'uninstall') await uninstallInstallation(deps, { ctx, input: { id } });
    else throw new DomainError('not_found', 'no such action');
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/installations/${id}`, 'installation_changed'), 303);
  });
}
