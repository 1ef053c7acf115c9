/**
 * The console's guards: security headers on every answer, the session from
 * its cookie, CSRF on every state-changing form, the org in the path checked
 * against the session's key (another org is 404, as in the API) and each
 * action's permission checked on the server whatever the page showed.
 */
import { timingSafeEqual, randomBytes } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import type { ConsoleSession } from '../auth/sessions.ts';
import { roleHolds, type Permission } from '../auth/roles.ts';
import { DomainError, forbidden, notFound } from '../core/errors.ts';
import type { Tenant } from '../core/tenant.ts';
import type { ApiEnv } from '../http/context.ts';
import type { VerbContext } from '../signals/verb-context.ts';

export interface ConsoleEnv {
  Variables: ApiEnv['Variables'] & {
    session?: ConsoleSession;
    sessionToken?: string;
    form?: Record<string, string>;
  };
}
export type ConsoleContext = Context<ConsoleEnv>;

export const SESSION_COOKIE = 'sb_console';
const SIGN_IN_COOKIE = 'sb_console_signin';
const MAX_FORM_BYTES = 1024 * 1024;

/** Scripts and styles from this origin only, no inline script, never framed. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const securityHeaders: MiddlewareHandler<ConsoleEnv> = async (c, next) => {
  c.header('Content-Security-Policy', CONSOLE_CSP);
  c.header('X-Frame-Options', 'DENY');
  c.header('Referrer-Policy', 'same-origin');
  c.header('Cross-Origin-Opener-Policy', 'same-origin');
  c.header('Cache-Control', 'no-store');
  await next();
};

function isHttps(c: ConsoleContext): boolean {
  return new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https';
}

function cookieOptions(c: ConsoleContext, maxAge?: number) {
  return { path: '/console', httpOnly: true, sameSite: 'Strict' as const, secure: isHttps(c), ...(maxAge !== undefined ? { maxAge } : {}) };
}

export function setSessionCookie(c: ConsoleContext, token: string, expiresAt: Date): void {
  setCookie(c, SESSION_COOKIE, token, cookieOptions(c, Math.max(0, Math.floor((expiresAt.getTime() - Date.now()) / 1000))));
}

export function clearSessionCookie(c: ConsoleContext): void {
  deleteCookie(c, SESSION_COOKIE, cookieOptions(c));
}

/** The sign-in form's CSRF token: a random value in a cookie and in the form (no session exists yet). */
export function signInToken(c: ConsoleContext): string {
  const existing = getCookie(c, SIGN_IN_COOKIE);
  if (existing && /^[A-Za-z0-9_-]{32}$/.test(existing)) return existing;
  const token = randomBytes(24).toString('base64url');
  setCookie(c, SIGN_IN_COOKIE, token, cookieOptions(c, 3600));
  return token;
}

/** Reads the session cookie; the session is looked up on every request (expiry and sign-out are server-side). */
export const loadSession: MiddlewareHandler<ConsoleEnv> = async (c, next) => {
  const token = getCookie(c, SESSION_COOKIE);
  if (token) {
    const session = await c.get('deps').sessions.find(token);
    if (session) {
      c.set('session', session);
      c.set('sessionToken', token);
    }
  }
  await next();
};

function same(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * Every POST: a same-origin request (when the browser says where it came
 * from), a bounded urlencoded form, and the CSRF token of the session — or,
 * for signing in, of the sign-in cookie.
 */
export const checkForm: MiddlewareHandler<ConsoleEnv> = async (c, next) => {
  if (c.req.method !== 'POST') return next();
  const origin = c.req.header('origin');
  if (origin && origin !== 'null' && new URL(origin).host !== c.req.header('host')) throw forbidden('cross-origin form');
  if (Number(c.req.header('content-length') ?? 0) > MAX_FORM_BYTES) throw new DomainError('payload_too_large', 'form too large');
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded')) throw new DomainError('unsupported_media_type', 'forms are urlencoded');
  const text = await c.req.text();
  if (text.length > MAX_FORM_BYTES) throw new DomainError('payload_too_large', 'form too large');
  const form = Object.fromEntries(new URLSearchParams(text));
  const session = c.get('session');
  const expected = c.req.path === '/console/sign-in' ? getCookie(c, SIGN_IN_COOKIE) : session?.csrfToken;
  if (!expected || typeof form._csrf !== 'string' || !same(form._csrf, expected)) throw forbidden('missing or invalid CSRF token');
  c.set('form', form);
  await next();
};

export function formOf(c: ConsoleContext): Record<string, string> {
  return c.get('form') ?? {};
}

export class SignInRequired extends Error {}

export function sessionOf(c: ConsoleContext): ConsoleSession {
  const session = c.get('session');
  if (!session) throw new SignInRequired();
  return session;
}

/** The session must hold `permission`; the server's answer, whatever the page offered. */
export function need(c: ConsoleContext, permission: Permission): ConsoleSession {
  const session = sessionOf(c);
  if (!roleHolds(session.principal.role, permission)) throw forbidden(`role ${session.principal.role} may not do this`);
  return session;
}

export function may(c: ConsoleContext, permission: Permission): boolean {
  const session = c.get('session');
  return session !== undefined && roleHolds(session.principal.role, permission);
}

/** The path's org, for a session allowed to see it: another org's key gets 404, so existence is not revealed. */
export const loadOrg: MiddlewareHandler<ConsoleEnv> = async (c, next) => {
  const session = sessionOf(c);
  const tenant = await c.get('deps').tenants.find(c.req.param('org') ?? '');
  if (!tenant || (session.principal.orgId !== null && session.principal.orgId !== tenant.id)) throw notFound('organization');
  c.set('tenant', tenant);
  await next();
};

export function tenantOf(c: ConsoleContext): Tenant {
  const tenant = c.get('tenant');
  if (!tenant) throw notFound('organization');
  return tenant;
}

/** The verb context of a console action: the session key's actor, source `console`. */
export function verbContextOf(c: ConsoleContext): VerbContext {
  return {
    tenant: tenantOf(c),
    actor: sessionOf(c).principal.actor,
    source: 'console',
    traceparent: null,
    requestId: c.get('requestId'),
  };
}
