/**
 * Console helpers for tests: sign in over HTTP (in process) the way a browser
 * does — fetch the form, post the key with the form's CSRF token — and keep
 * the cookies; post forms with a page's CSRF token.
 */
import type { TestApp } from './harness.ts';

export interface ConsoleClient {
  cookies: Map<string, string>;
  get(path: string): Promise<{ status: number; headers: Headers; text: string }>;
  /** Posts a urlencoded form; `csrf` defaults to the token on the last page fetched. */
  post(path: string, form: Record<string, string>, options?: { csrf?: string | null; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; text: string }>;
  lastCsrf: string | undefined;
}

export function csrfOf(html: string): string | undefined {
  return /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
}

export function consoleClient(t: TestApp): ConsoleClient {
  const cookies = new Map<string, string>();
  const client: ConsoleClient = {
    cookies,
    lastCsrf: undefined,
    async get(path) {
      const response = await send(path, { method: 'GET' });
      return response;
    },
    async post(path, form, options = {}) {
      const csrf = options.csrf === undefined ? client.lastCsrf : options.csrf;
      const body = new URLSearchParams({ ...form, ...(csrf ? { _csrf: csrf } : {}) }).toString();
      return send(path, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers } });
    },
  };
  async function send(path: string, init: { method: string; body?: string; headers?: Record<string, string> }) {
    const cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const response = await t.app.http.request(path, { ...init, headers: { host: 'localhost', ...init.headers, ...(cookie ? { cookie } : {}) } });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, ...value] = pair!.split('=');
      if (/max-age=0/i.test(line) || value.join('=') === '') cookies.delete(name!.trim());
      else cookies.set(name!.trim(), value.join('='));
    }
    const text = await response.text();
    const csrf = csrfOf(text);
    if (csrf) client.lastCsrf = csrf;
    return { status: response.status, headers: response.headers, text };
  }
  return client;
}

/** A client signed in with `key`; fails the test when sign-in does not redirect. */
export async function signedIn(t: TestApp, key: string): Promise<ConsoleClient> {
  const client = consoleClient(t);
  await client.get('/console/sign-in');
  const response = await client.post('/console/sign-in', { api_key: key });
  if (response.status !== 303) throw new Error(`sign-in answered ${response.status}: ${response.text.slice(0, 300)}`);
  return client;
}
