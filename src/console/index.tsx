/**
 * console — the operator console at /console: server-rendered pages (hono
 * JSX, escaped by construction) over the same domain verbs, roles and signals
 * as the API. It never touches the database: sessions, orgs and every view go
 * through verbs. The browser runs one small script from this origin (live
 * tail, countdowns); every form works without it, and the server checks each
 * action's permission and CSRF token whatever the page showed.
 */
import { Hono } from 'hono';
import { DomainError } from '../core/errors.ts';
import type { ApiApp } from '../http/context.ts';
import { registerConsoleAssets } from './assets.ts';
import { checkForm, loadOrg, loadSession, securityHeaders, SignInRequired, type ConsoleEnv } from './guard.ts';
import { Page } from './layout.tsx';
import { registerDirectivePage } from './views/directive.tsx';
import { registerDirectives } from './views/directives.tsx';
import { registerExecutionPage } from './views/execution.tsx';
import { registerExecutions } from './views/executions.tsx';
import { registerInstallationActions } from './views/installation-actions.tsx';
import { registerInstallations } from './views/installations.tsx';
import { registerInstallForm } from './views/install-form.tsx';
import { registerOrgs } from './views/orgs.tsx';
import { registerPolicies } from './views/policies.tsx';
import { registerReplays } from './views/replays.tsx';
import { registerSecrets } from './views/secrets.tsx';
import { registerSignals } from './views/signals.tsx';
import { registerSignIn } from './views/sign-in.tsx';

const TITLES: Record<number, string> = { 400: 'Bad request', 401: 'Sign in again', 403: 'Not allowed', 404: 'Not found', 409: 'Conflict', 413: 'Too large', 415: 'Unsupported form', 422: 'Not valid', 429: 'Too many requests' };

export function createConsole(): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  app.use('*', securityHeaders);
  registerConsoleAssets(app);
  app.use('*', loadSession, checkForm);
  app.use('/orgs/:org/*', loadOrg);
  registerSignIn(app);
  registerOrgs(app);
  registerSignals(app);
  registerDirectives(app);
  registerDirectivePage(app);
  registerExecutions(app);
  registerExecutionPage(app);
  registerPolicies(app);
  registerSecrets(app);
  registerReplays(app);
  // Before the installation pages: `new` is not an installation id.
  registerInstallForm(app);
  registerInstallations(app);
  registerInstallationActions(app);
  app.all('*', () => {
    throw new DomainError('not_found', 'no such page');
  });

  app.onError((error, c) => {
    if (error instanceof SignInRequired) return c.redirect('/console/sign-in', 303);
    const session = c.get('session');
    if (error instanceof DomainError && error.status < 500) {
      const details = error.errors?.map((item) => `${item.path ? `${item.path}: ` : ''}${item.message}`) ?? [];
      return c.html(
        <Page title={TITLES[error.status] ?? 'Error'} session={session} org={c.get('tenant')?.slug} error={error.message}>
          {details.length > 0 ? <ul>{details.map((detail) => <li>{detail}</li>)}</ul> : null}
          <p><a href="/console">Back to the console</a></p>
        </Page>,
        error.status as 400,
      );
    }
    c.get('deps').logger.error({ request_id: c.get('requestId'), err: error }, 'unhandled console error');
    return c.html(
      <Page title="Something went wrong" session={session} error={`The server failed; request id ${c.get('requestId')}.`} />,
      500,
    );
  });
  return app;
}

export function registerConsole(app: ApiApp): void {
  app.route('/console', createConsole());
}
