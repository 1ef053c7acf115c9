/**
 * Credentials for an executor: a directive's installation's secrets first,
 * then its org's. A stored secret that cannot be opened (tampered, or sealed
 * under a master key this process lacks) fails the directive at once — no
 * retry can help — naming the credential, never its value.
 */
import type { Credentials } from '../executors/registry.ts';
import { UnknownMasterKeyError, VaultIntegrityError } from '../secrets/envelope.ts';
import { readSecret } from '../secrets/vault.ts';
import type { TenantRef } from '../tenancy/tenant-migrations.ts';
import type { DirectiveDeps } from './deps.ts';

/** A stored credential that cannot be opened: no retry can help, so the directive fails at once. */
export class CredentialUnreadableError extends Error {
  constructor(name: string, reason: string) {
    super(`the credential ${name} cannot be read: ${reason}`);
    this.name = 'CredentialUnreadableError';
  }
}

export function credentialsFor(deps: DirectiveDeps, tenant: TenantRef, installationId: string | null): Credentials {
  return {
    async get(name) {
      try {
        return await readSecret(deps.vault, { tenant, name, installationId });
      } catch (error) {
        if (error instanceof VaultIntegrityError || error instanceof UnknownMasterKeyError) throw new CredentialUnreadableError(name, error.message);
        throw error;
      }
    },
  };
}
