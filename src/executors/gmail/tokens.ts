/**
 * Gmail access tokens: refreshed from the OAuth refresh token, cached in
 * memory until shortly before they expire, and refreshed single-flight — the
 * executions that find no usable token for a credential at the same moment
 * share one refresh instead of each spending one (Google rate-limits the token
 * endpoint, and a burst of sends after a restart would otherwise hit it once
 * per send). The cache is per process; a token never leaves it except in the
 * Authorization header of a Gmail call.
 */
import { createHash } from 'node:crypto';
import { auth } from 'googleapis/build/src/apis/gmail/index.js';
import { z } from 'zod';

/** The `gmail_oauth` secret. */
export const GmailCredential = z.object({
  client_id: z.string().min(1),
  client_secret: z.string().min(1),
  refresh_token: z.string().min(1),
});
export type GmailCredential = z.infer<typeof GmailCredential>;

export interface AccessToken {
  token: string;
  /** Epoch ms. */
  expiresAt: number;
}

export interface TokenLease {
  token: string;
  /** True when this call waited for a refresh rather than reusing a cached token. */
  refreshed: boolean;
}

export interface TokenCache {
  /** A usable token for `key`, calling `refresh` only when none is cached or in flight. */
  get(key: string, refresh: () => Promise<AccessToken>): Promise<TokenLease>;
  /** Forgets `token` for `key` (Gmail refused it); a newer token is kept. */
  invalidate(key: string, token: string): void;
}

interface Entry {
  token?: AccessToken;
  pending?: Promise<AccessToken>;
}

/**
 * `marginMs` before expiry a token counts as expired, so a call never starts
 * with a token that lapses on the way.
 */
export function createTokenCache({ now = Date.now, marginMs = 60_000, maxEntries = 10_000 }: { now?: () => number; marginMs?: number; maxEntries?: number } = {}): TokenCache {
  const entries = new Map<string, Entry>();
  const usable = (token: AccessToken | undefined) => token !== undefined && token.expiresAt - marginMs > now();

  function prune() {
    if (entries.size <= maxEntries) return;
    for (const [key, entry] of entries) if (!entry.pending && !usable(entry.token)) entries.delete(key);
    // Still full of live tokens: drop the oldest inserted; they are refreshed again on demand.
    for (const key of entries.keys()) {
      if (entries.size <= maxEntries) break;
      if (!entries.get(key)?.pending) entries.delete(key);
    }
  }

  return {
    async get(key, refresh) {
      const entry = entries.get(key);
      if (entry?.token && usable(entry.token)) return { token: entry.token.token, refreshed: false };
      if (entry?.pending) return { token: (await entry.pending).token, refreshed: true };
      const pending = refresh().then(
        (token) => {
          if (entries.get(key)?.pending === pending) entries.set(key, { token });
          return token;
        },
        (error: unknown) => {
          // A failed refresh is not cached: the next execution tries again.
          if (entries.get(key)?.pending === pending) entries.delete(key);
          throw error;
        },
      );
      entries.set(key, { pending });
      prune();
      return { token: (await pending).token, refreshed: true };
    },
    invalidate(key, token) {
      if (entries.get(key)?.token?.token === token) entries.delete(key);
    },
  };
}

/**
 * The cache key of a credential: org, installation, and a digest of the
 * secret, so a renewed secret starts afresh instead of using the old grant's
 * token. The digest stays in memory; it is never logged.
 */
export function tokenCacheKey({ orgId, installationId }: { orgId: string; installationId: string | null }, secret: string): string {
  return `${orgId}/${installationId ?? 'org'}/${createHash('sha256').update(secret).digest('hex')}`;
}

export interface OAuthClientOptions {
  /** The token endpoint; Google's when undefined. */
  tokenUrl?: string;
  timeoutMs: number;
}

export type OAuth2Client = InstanceType<typeof auth.OAuth2>;

/**
 * An OAuth2 client whose transport never retries: google-auth-library retries
 * token requests (POST included) and googleapis retries API calls by default,
 * and either would repeat a send behind the executor's back or stack its
 * backoff on the core's. The core's retry policy is the only one in force.
 */
export function oauthClient({ tokenUrl, timeoutMs }: OAuthClientOptions, credential?: GmailCredential): OAuth2Client {
  const client = new auth.OAuth2({
    ...(credential ? { clientId: credential.client_id, clientSecret: credential.client_secret } : {}),
    ...(tokenUrl ? { endpoints: { oauth2TokenUrl: tokenUrl } } : {}),
    transporterOptions: { timeout: timeoutMs, retry: false },
  });
  client.transporter.interceptors.request.add({
    resolved: async (options) => {
      options.retry = false;
      // A retryConfig (the token requests bring one) would re-enable retries; retry: 0 disables them.
      options.retryConfig = { ...options.retryConfig, retry: 0, noResponseRetries: 0 };
      return options;
    },
  });
  return client;
}

export class TokenResponseError extends Error {
  constructor() {
    super('the token endpoint answered without an access token');
    this.name = 'TokenResponseError';
  }
}

/** Exchanges the refresh token for an access token at the token endpoint. */
export async function refreshAccessToken(options: OAuthClientOptions, credential: GmailCredential, now: () => number): Promise<AccessToken> {
  const client = oauthClient(options, credential);
  client.setCredentials({ refresh_token: credential.refresh_token });
  const { token } = await client.getAccessToken();
  if (!token) throw new TokenResponseError();
  // The library stamps expiry on the system clock; the cache reads the
  // executor's clock, so carry the lifetime over. Without expires_in, assume
  // Google's usual hour.
  const expiry = client.credentials.expiry_date;
  const lifetimeMs = expiry ? expiry - Date.now() : 3_600_000;
  return { token, expiresAt: now() + lifetimeMs };
}
