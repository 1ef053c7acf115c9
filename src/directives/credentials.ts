/**
 * Credentials for an executor: a directive's installation's secrets first,
 * then its org's. A stored secret that cannot be opened (tampered, or sealed
 * under a master key this process lacks) fails the directive at once — no
 * retry can help — naming the credential, never its value.
 */
import type { Credentials } from '../executors/registry.ts';
import { UnknownMasterKeyError, VaultIntegrityError } from '../secrets/envelope.ts';
import { readSecret } from '../secrets/vault.ts';
import type { Tenant } from '../core/tenant.ts';
import type { DirectiveDeps } from './deps.ts';

/** A stored credential that cannot be opened: no retry can help, so the directive fails at once. */
export class CredentialUnreadableError extends Error {
  constructor(name: string, reason: string) {
    super(`the credential ${name} cannot be read: ${reason}`);
    this.name = 'CredentialUnreadableError';
  }
}

/**
 * Reads of one credential that overlap share one query and one decryption:
 * the executions a worker starts together (a claimed group) ask for the same
 * secret at once. A read still starts after every write that committed
 * before the first of them began.
 */
const inFlightByVault = new WeakMap<DirectiveDeps['vault'], Map<string, Promise<string | undefined>>>();

function readShared(deps: DirectiveDeps, tenant: Tenant, name: string, installationId: string | null): Promise<string | undefined> {
  let inFlight = inFlightByVault.get(deps.vault);
  if (!inFlight) inFlightByVault.set(deps.vault, (inFlight = new Map()));
  const key = `${tenant.schema}\u0000${installationId ?? ''}\u0000${name}`;
  let read = inFlight.get(key);
  if (!read) {
    read = readSecret(deps.vault, { tenant, name, installationId }).finally(() => inFlight.delete(key));
    inFlight.set(key, read);
  }
  return read;
}

export function credentialsFor(deps: DirectiveDeps, tenant: Tenant, installationId: string | null): Credentials {
  return {
    async get(name) {
      try {
        return await readShared(deps, tenant, name, installationId);
      } catch (error) {
        if (error instanceof VaultIntegrityError || error instanceof UnknownMasterKeyError) throw new CredentialUnreadableError(name, error.message);
        throw error;
      }
    },
  };
}
