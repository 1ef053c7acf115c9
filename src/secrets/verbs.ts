/**
 * The vault's API verbs. A write and its audit signal commit together; the
 * signal names the secret and its fingerprint, never the value, so the log
 * shows who changed which credential and when without holding it.
 */
import { readerOf, withTransaction, type Tx } from '../db/transaction.ts';
import type { NoInput, VerbCall, VerbContext } from '../signals/verb-context.ts';
import { emit, type EmitDeps } from '../signals/emit.ts';
import { deleteSecret, listSecrets, ORG_OWNER, putSecret, type SecretChanged, type SecretView, type VaultDeps } from './vault.ts';

export interface SecretVerbDeps {
  vault: VaultDeps;
  emit: EmitDeps;
}

async function audit(deps: SecretVerbDeps, ctx: VerbContext, tx: Tx, type: 'secret.updated' | 'secret.deleted', view: SecretView) {
  const payload: SecretChanged = { name: view.name, owner: ORG_OWNER, fingerprint: view.fingerprint, last4: view.last4 };
  await emit(deps.emit, {
    ctx: { ...ctx, system: true, tx },
    input: {
      type,
      subject: `secret:${ORG_OWNER}/${view.name}`,
      payload,
    },
  });
}

/** Sets the org's secret `input.name` to the parsed `input.secret` (`{ value }`). */
export function setSecret(deps: SecretVerbDeps, { ctx, input }: VerbCall<{ name: string; secret: unknown }>): Promise<SecretView> {
  return withTransaction(deps.vault.sql, ctx.tx, async (tx) => {
    const view = await putSecret(deps.vault, { tenant: ctx.tenant, name: input.name, input: input.secret, db: tx.sql });
    await audit(deps, ctx, tx, 'secret.updated', view);
    return view;
  });
}

export function removeSecret(deps: SecretVerbDeps, { ctx, input }: VerbCall<{ name: string }>): Promise<SecretView> {
  return withTransaction(deps.vault.sql, ctx.tx, async (tx) => {
    const view = await deleteSecret(tx.sql, { tenant: ctx.tenant, name: input.name });
    await audit(deps, ctx, tx, 'secret.deleted', view);
    return view;
  });
}

export function listOrgSecrets(deps: SecretVerbDeps, { ctx }: VerbCall<NoInput>): Promise<SecretView[]> {
  return listSecrets(readerOf(deps.vault.sql, ctx.tx), ctx.tenant);
}
