/**
 * Signing in and out. The API key is posted once, exchanged for a session,
 * and never kept by the browser: the cookie holds a random session token.
 */
import type { Hono } from 'hono';
import { getCookie } from 'hono/cookie';
import { clearSessionCookie, formOf, SESSION_COOKIE, setSessionCookie, signInToken, type ConsoleContext, type ConsoleEnv } from '../guard.ts';
import { Page } from '../layout.tsx';
import { noticeText } from '../notices.ts';

function SignInPage({ csrf, error, notice }: { csrf: string; error?: string; notice?: string | undefined }) {
  return (
    <Page title="Sign in" error={error} notice={notice}>
      <form method="post" action="/console/sign-in" class="stack narrow">
        <input type="hidden" name="_csrf" value={csrf} />
        <label for="api-key">API key</label>
        <input id="api-key" name="api_key" type="password" autocomplete="off" required placeholder="sbk_…" />
        <p class="hint">
          The key is exchanged for a session and not stored in this browser. <code>npm start</code> prints a platform-admin key on
          first run.
        </p>
        <button type="submit">Sign in</button>
      </form>
    </Page>
  );
}

function home(c: ConsoleContext): string {
  const session = c.get('session');
  if (!session) return '/console/sign-in';
  if (session.principal.orgId === null) return '/console/orgs';
  return `/console/orgs/${session.principal.orgId}/signals`;
}

export function registerSignIn(app: Hono<ConsoleEnv>): void {
  app.get('/', (c) => c.redirect(home(c), 303));
  app.get('/sign-in', (c) => {
    if (c.get('session')) return c.redirect(home(c), 303);
    return c.html(<SignInPage csrf={signInToken(c)} notice={noticeText(c.req.query('notice'))} />);
  });
  app.post('/sign-in', async (c) => {
    const deps = c.get('deps');
    const limiter = deps.rateLimiter;
    // A guessed key costs the address a token, like an unknown key on the API.
    const admit = limiter
      ? () => {
          const verdict = limiter.forAddress((c.env as { incoming?: { socket?: { remoteAddress?: string } } })?.incoming?.socket?.remoteAddress ?? 'unknown');
          return !verdict || verdict.allowed;
        }
      : undefined;
    const opened = await deps.sessions.open((formOf(c).api_key ?? '').trim(), admit);
    if (!opened) return c.html(<SignInPage csrf={signInToken(c)} error="That API key is not valid." />, 401);
    setSessionCookie(c, opened.token, opened.session.expiresAt);
    c.set('session', opened.session);
    return c.redirect(home(c), 303);
  });
  app.post('/sign-out', async (c) => {
    const token = getCookie(c, SESSION_COOKIE);
    if (token) await c.get('deps').sessions.close(token);
    clearSessionCookie(c);
    return c.redirect('/console/sign-in?notice=signed_out', 303);
  });
}
