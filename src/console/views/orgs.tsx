/**
 * Organizations (platform keys): the list with each org's tenant-migration
 * status, and creating one (platform admin), through the provisioning verb.
 */
import type { Hono } from 'hono';
import { forbidden } from '../../core/errors.ts';
import { CreateOrgInput, provisionOrg } from '../../tenancy/provision.ts';
import { formOf, may, need, sessionOf, type ConsoleEnv } from '../guard.ts';
import { Csrf, NextPage, Page, Time } from '../layout.tsx';
import { noticeText } from '../notices.ts';
import { DomainError } from '../../core/errors.ts';

const PAGE_SIZE = 100;

export function registerOrgs(app: Hono<ConsoleEnv>): void {
  app.get('/orgs', async (c) => {
    const session = need(c, 'org:read');
    if (session.principal.orgId !== null) throw forbidden('only platform keys list organizations');
    const after = c.req.query('after');
    const page = await c.get('deps').orgCatalog.list({ limit: PAGE_SIZE, ...(after ? { afterSlug: after } : {}) });
    return c.html(
      <Page title="Organizations" session={session} current="orgs" notice={noticeText(c.req.query('notice'))}>
        <div class="scroll">
          <table>
            <thead>
              <tr><th scope="col">Slug</th><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Migrations</th></tr>
            </thead>
            <tbody>
              {page.data.map((org) => (
                <tr>
                  <td><a href={`/console/orgs/${org.slug}/signals`}>{org.slug}</a></td>
                  <td>{org.name}</td>
                  <td>{org.status}</td>
                  <td><Time value={org.created_at} /></td>
                  <td>
                    {org.migration.error
                      ? <span class="status failed">failed at v{org.migration.version + 1}: {org.migration.error}</span>
                      : org.migration.version < org.migration.latest
                        ? <span class="status retrying">behind: v{org.migration.version} of {org.migration.latest}</span>
                        : <span class="status succeeded">current (v{org.migration.version})</span>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <NextPage base="/console/orgs" query={{}} cursor={page.next_cursor} />
        {may(c, 'platform:admin') ? (
          <section aria-labelledby="create-org">
            <h2 id="create-org">Create an organization</h2>
            <form method="post" action="/console/orgs" class="stack narrow">
              <Csrf session={session} />
              <label for="org-slug">Slug</label>
              <input id="org-slug" name="slug" required pattern="[a-z][a-z0-9_]{1,38}" />
              <label for="org-name">Name</label>
              <input id="org-name" name="name" required />
              <button type="submit">Create</button>
            </form>
          </section>
        ) : null}
      </Page>,
    );
  });

  app.post('/orgs', async (c) => {
    need(c, 'platform:admin');
    sessionOf(c);
    const form = formOf(c);
    const parsed = CreateOrgInput.safeParse({ slug: form.slug ?? '', name: form.name ?? '' });
    if (!parsed.success) {
      throw new DomainError('validation_failed', parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; '));
    }
    const { tenant } = await provisionOrg(c.get('deps').bus.orgs, { input: parsed.data });
    return c.redirect(`/console/orgs?notice=org_created#${tenant.slug}`, 303);
  });
}
