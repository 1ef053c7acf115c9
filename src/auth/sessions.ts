/**
 * Console sessions: an API key exchanged for a random session token. The
 * browser keeps only that token (in an HttpOnly cookie); the table keeps its
 * sha256, the key's id and a CSRF token bound to the session. Every lookup
 * checks expiry in the database and joins the key, so signing out, expiry and
 * revoking the key all end the session at once, server-side.
 */
import { randomBytes } from 'node:crypto';
import type { Sql } from '../db/client.ts';
import type { KeyAuthenticator, Principal } from './authenticate.ts';
import { hashSecret } from './api-keys.ts';

export interface ConsoleSession {
  principal: Principal;
  /** Submitted with every state-changing form; compared in constant time by the console. */
  csrfToken: string;
  expiresAt: Date;
}

export interface SessionStore {
  /** Exchanges a valid API key for a session; null when the key is not valid (or `admit` refused its lookup). */
  open(secret: string, admit?: () => boolean): Promise<{ token: string; session: ConsoleSession } | null>;
  /** The live session of a token, or null (unknown, expired, signed out, key revoked). */
  find(token: string): Promise<ConsoleSession | null>;
  /** Signs out: the token answers nothing afterwards. */
  close(token: string): Promise<void>;
}

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

export function createSessionStore(
  deps: { sql: Sql; authenticator: KeyAuthenticator },
  { ttlMs = 8 * 60 * 60 * 1000 }: { ttlMs?: number } = {},
): SessionStore {
  return {
    async open(secret, admit) {
      const principal = await deps.authenticator.authenticate(secret, admit);
      if (!principal) return null;
      const token = randomToken();
      const csrfToken = randomToken();
      const expiresAt = new Date(Date.now() + ttlMs);
      // Expired rows of any session are swept here, on sign-in: no timer, and the table stays small.
      await deps.sql`delete from public.console_sessions where expires_at < now()`;
      await deps.sql`
        insert into public.console_sessions (token_hash, key_id, csrf_token, expires_at)
        values (${hashSecret(token)}, ${principal.keyId}, ${csrfToken}, ${expiresAt})`;
      return { token, session: { principal, csrfToken, expiresAt } };
    },
    async find(token) {
      if (!TOKEN_PATTERN.test(token)) return null;
      const [row] = await deps.sql<(Principal & { csrfToken: string; expiresAt: Date })[]>`
        select k.id as "keyId", k.org_id as "orgId", k.role, k.actor, s.csrf_token as "csrfToken", s.expires_at as "expiresAt"
          from public.console_sessions s join public.api_keys k on k.id = s.key_id
         where s.token_hash = ${hashSecret(token)} and s.expires_at > now() and k.revoked_at is null`;
      if (!row) return null;
      const { csrfToken, expiresAt, ...principal } = row;
      return { principal, csrfToken, expiresAt };
    },
    async close(token) {
      if (!TOKEN_PATTERN.test(token)) return;
      await deps.sql`delete from public.console_sessions where token_hash = ${hashSecret(token)}`;
    },
  };
}
