/**
 * Resolves a bearer secret to its key. Lookups are cached briefly so the emit
 * path does not pay a query per request; revocation clears this process's
 * cache at once and reaches other processes within `cacheTtlMs`.
 * `last_used_at` is written at most once per `touchIntervalMs` per key.
 */
import type { Sql } from '../db/client.ts';
import type { Actor } from '../signals/actor.ts';
import { hashSecret, KEY_PREFIX } from './api-keys.ts';
import type { Role } from './roles.ts';

export interface Principal {
  keyId: string;
  orgId: string | null;
  role: Role;
  actor: Actor;
}

interface CacheEntry {
  principal: Principal | null;
  expiresAt: number;
}

export interface KeyAuthenticator {
  /**
   * The key's principal, or null. `admit` is asked before a database lookup
   * (not for a cached answer, nor to join a lookup of the same key already
   * under way); when it answers false the key is not looked up and the
   * answer is null.
   */
  authenticate(secret: string, admit?: () => boolean): Promise<Principal | null>;
  /** Forget cached lookups for a key (after revocation). */
  forget(keyId: string): void;
}

export function createKeyAuthenticator(
  deps: { sql: Sql; onError?: (error: unknown) => void },
  { cacheTtlMs = 5_000, touchIntervalMs = 60_000, maxEntries = 10_000 } = {},
): KeyAuthenticator {
  const cache = new Map<string, CacheEntry>();
  const lastTouched = new Map<string, number>();

  const touch = (keyId: string, now: number) => {
    if ((lastTouched.get(keyId) ?? 0) + touchIntervalMs > now) return;
    lastTouched.set(keyId, now);
    deps.sql`update public.api_keys set last_used_at = now() where id = ${keyId}`.catch((error) => deps.onError?.(error));
  };

  const inFlight = new Map<string, Promise<Principal | null>>();

  const lookup = async (hash: string, now: number): Promise<Principal | null> => {
    const [row] = await deps.sql<Principal[]>`
      select id as "keyId", org_id as "orgId", role, actor
        from public.api_keys where secret_hash = ${hash} and revoked_at is null`;
    const principal = row ?? null;
    if (cache.size >= maxEntries) cache.clear();
    cache.set(hash, { principal, expiresAt: now + cacheTtlMs });
    return principal;
  };

  return {
    async authenticate(secret, admit) {
      if (!secret.startsWith(KEY_PREFIX) || secret.length > 100) return null;
      const hash = hashSecret(secret);
      const now = Date.now();
      const entry = cache.get(hash);
      let principal: Principal | null;
      if (entry && entry.expiresAt > now) principal = entry.principal;
      else {
        // Concurrent requests with one uncached key share its lookup.
        let pending = inFlight.get(hash);
        if (!pending) {
          if (admit && !admit()) return null;
          pending = lookup(hash, now).finally(() => inFlight.delete(hash));
          inFlight.set(hash, pending);
        }
        principal = await pending;
      }
      if (principal) touch(principal.keyId, now);
      return principal;
    },
    forget(keyId) {
      for (const [hash, entry] of cache) if (entry.principal?.keyId === keyId) cache.delete(hash);
    },
  };
}
