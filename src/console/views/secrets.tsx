/**
 * Secrets (admin): names, fingerprints and last four characters, never
 * values; set and delete through the vault's verbs, each audited as a signal.
 */
import type { Hono } from 'hono';
import { DomainError } from '../../core/errors.ts';
import { SecretName } from '../../secrets/vault.ts';
import { listOrgSecrets, removeSecret, setSecret } from '../../secrets/verbs.ts';
import { formOf, need, tenantOf, verbContextOf, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Csrf, Page, Time } from '../layout.tsx';
import { noticeText, withNotice } from '../notices.ts';

function vaultDeps(c: ConsoleContext) {
  return c.get('deps').bus.secrets;
}

function secretName(value: string | undefined): string {
  const parsed = SecretName.safeParse(value ?? '');
  if (!parsed.success) throw new DomainError('validation_failed', 'name must match ^[a-z][a-z0-9_.-]{0,62}$', [{ path: 'name', message: 'invalid name' }]);
  return parsed.data;
}

export function registerSecrets(app: Hono<ConsoleEnv>): void {
  app.get('/orgs/:org/secrets', async (c) => {
    const session = need(c, 'org:admin');
    const org = tenantOf(c).slug;
    const secrets = await listOrgSecrets(vaultDeps(c), { ctx: verbContextOf(c), input: {} });
    return c.html(
      <Page title="Secrets" session={session} org={org} current="secrets" notice={noticeText(c.req.query('notice'))}>
        <div class="scroll">
          <table>
            <thead>
              <tr><th scope="col">Name</th><th scope="col">Fingerprint</th><th scope="col">Last 4</th><th scope="col">Updated</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr>
            </thead>
            <tbody>
              {secrets.map((secret) => (
                <tr>
                  <td>{secret.name}</td>
                  <td><code>{secret.fingerprint}</code></td>
                  <td><code>{secret.last4}</code></td>
                  <td><Time value={secret.updated_at} /></td>
                  <td>
                    <form method="post" action={`/console/orgs/${org}/secrets/delete`}>
                      <Csrf session={session} />
                      <input type="hidden" name="name" value={secret.name} />
                      <button type="submit" class="danger" aria-label={`Delete ${secret.name}`}>Delete</button>
                    </form>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {secrets.length === 0 ? <p>No secrets stored.</p> : null}
        <h2>Set a secret</h2>
        <form method="post" action={`/console/orgs/${org}/secrets`} class="stack narrow">
          <Csrf session={session} />
          <label for="secret-name">Name</label>
          <input id="secret-name" name="name" required pattern="[a-z][a-z0-9_.\-]{0,62}" placeholder="stripe_api_key" />
          <label for="secret-value">Value</label>
          <input id="secret-value" name="value" type="password" required autocomplete="off" />
          <button type="submit">Store</button>
        </form>
      </Page>,
    );
  });

  app.post('/orgs/:org/secrets', async (c) => {
    need(c, 'org:admin');
    const form = formOf(c);
    await setSecret(vaultDeps(c), { ctx: verbContextOf(c), input: { name: secretName(form.name), secret: { value: form.value ?? '' } } });
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/secrets`, 'secret_set'), 303);
  });

  app.post('/orgs/:org/secrets/delete', async (c) => {
    need(c, 'org:admin');
    await removeSecret(vaultDeps(c), { ctx: verbContextOf(c), input: { name: secretName(formOf(c).name) } });
    return c.redirect(withNotice(`/console/orgs/${tenantOf(c).slug}/secrets`, 'secret_deleted'), 303);
  });
}
